"""structlog: JSON when not on a terminal, readable on one; personal data scrubbed on every line.

Each line is handed to the stream in one write, newline included, and flushed (structlog's
WriteLogger): processes sharing a log file never glue one line into another. (PrintLogger's print()
writes the text and the newline separately; unbuffered, two workers' lines interleaved mid-line.)"""

from __future__ import annotations

import logging
import sys

import structlog

from services.privacy import scrub


def _stderr_logger(*_args) -> structlog.WriteLogger:
    return structlog.WriteLogger(sys.stderr)


def configure(*, json: bool | None = None, level: str = "INFO", library_level: str = "WARNING") -> None:
    as_json = (not sys.stderr.isatty()) if json is None else json
    shared = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        scrub,
    ]
    renderer = structlog.processors.JSONRenderer(ensure_ascii=False) if as_json else structlog.dev.ConsoleRenderer()
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        # sys.stderr as it is when a line is written, not when this ran: under pytest each test has its own, and
        # a logger holding an earlier test's (closed) failed with 'I/O operation on closed file'
        logger_factory=_stderr_logger,
        cache_logger_on_first_use=False,
    )
    logging.basicConfig(level=logging.getLevelName(library_level.upper()), stream=sys.stderr, format="%(levelname)s %(name)s %(message)s")

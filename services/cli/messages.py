"""What every `yingji` command says about bad input: one line per bad field, and the exit code."""

from __future__ import annotations

from pydantic import ValidationError

EXIT_INVALID = 2  # the input named a bad field


def validation_messages(exc: ValidationError) -> list[str]:
    """One line per bad field, named by its dotted path."""
    out = []
    for err in exc.errors():
        path = ".".join(str(p) for p in err["loc"]) or "(report)"
        msg = err["msg"].removeprefix("Value error, ")
        if ": " in msg and path == "(report)":
            path, msg = msg.split(": ", 1)
        out.append(f"{path}: {msg}")
    return out

"""The functional core stays pure: playbooks/ and topics/ import no shell and read no clock."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = {"services", "faust", "aiokafka", "kafka", "fastapi", "structlog", "prometheus_client", "mode", "uvicorn"}
CORE_FILES = sorted([*ROOT.glob("playbooks/**/*.py"), *ROOT.glob("topics/**/*.py")])


@pytest.mark.parametrize("path", CORE_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_core_imports_no_shell(path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        for name in names:
            assert name.split(".")[0] not in FORBIDDEN, f"{path.name} imports {name}"


@pytest.mark.parametrize("path", CORE_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_core_reads_no_clock(path):
    text = path.read_text(encoding="utf-8")
    for banned in ("datetime.now", "utcnow", "time.time(", "date.today"):
        assert banned not in text, f"{path.name} reads the clock via {banned}"

"""The functional core stays pure: playbooks/ and topics/ import no shell and read no clock.

The imports are import-linter's contracts in pyproject.toml ([tool.importlinter]): the layers
services -> playbooks -> topics, no shell library in the core, no import cycle inside any package."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORE_FILES = sorted([*ROOT.glob("playbooks/**/*.py"), *ROOT.glob("topics/**/*.py")])


def test_the_import_contracts_are_kept():
    lint = Path(sys.executable).with_name("lint-imports")
    out = subprocess.run([str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert "BROKEN" not in out.stdout and out.stdout.count("KEPT") >= 3


@pytest.mark.parametrize("path", CORE_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_core_reads_no_clock(path):
    text = path.read_text(encoding="utf-8")
    for banned in ("datetime.now", "utcnow", "time.time(", "date.today"):
        assert banned not in text, f"{path.name} reads the clock via {banned}"

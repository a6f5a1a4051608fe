"""Running the ``angos`` command as a user would, for the startup and command tests."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.support.angos_server import angos_command


def run_angos(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """``angos <args>`` in ``cwd``, its output captured."""
    return subprocess.run(
        [*angos_command(), *args], cwd=cwd, capture_output=True, text=True, timeout=60
    )


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    """The one stderr line a refused command prints (no traceback, nothing else)."""
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]

"""Finding the external programs end-to-end tests drive.

Outside CI a missing tool skips the test with the command that installs it. Under CI=true it
fails: the README's test command installs every tool, so a missing one is a broken setup.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_tool(name: str, install_hint: str) -> str:
    """Absolute path of ``name``; skip (or fail under CI=true) when it is not installed."""
    # root's PATH may lack the sbin directories where dockerd lives
    sbin = ("/usr/sbin", "/sbin", "/usr/local/sbin")
    path = shutil.which(name) or next((p for d in sbin if os.path.exists(p := f"{d}/{name}")), None)
    if path:
        return path
    message = f"{name} is not installed; {install_hint}"
    if IN_CI:
        pytest.fail(message + " (CI=true: end-to-end tools must be present)")
    pytest.skip(message)


def unavailable(message: str, what: str) -> None:
    """A tool is installed but cannot work here (no root, a daemon that will not start): skip,
    or fail under CI=true, where ``what`` must work."""
    if IN_CI:
        pytest.fail(f"{message} (CI=true: {what} must work)")
    pytest.skip(message)


def log_tail(path: Path, lines: int = 40) -> str:
    """The end of a daemon's log file, for an error message."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return f"(no log at {path})"


def run_tool(
    argv: Sequence[str],
    *,
    shown: str,
    env: Mapping[str, str] | None = None,
    check: bool = True,
    timeout: float = 300,
    log: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a client command; with ``check``, a non-zero exit fails the test with ``shown``
    (the command as a reader knows it), its stdout and stderr, and the daemon's ``log``."""
    proc = subprocess.run(
        list(argv),
        env=None if env is None else dict(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    if check and proc.returncode != 0:
        message = (
            f"{shown} exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
        )
        if log is not None:
            message += f"\nlog:\n{log_tail(log)}"
        raise AssertionError(message)
    return proc

"""Finding the external programs end-to-end tests drive.

Outside CI a missing tool skips the test with the command that installs it. Under CI=true it
fails: the README's test command installs every tool, so a missing one is a broken setup.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
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


@contextlib.contextmanager
def run_daemon(
    argv: Sequence[str],
    *,
    log: Path,
    ready: Callable[[], bool],
    name: str,
    what: str,
    start_timeout: float,
    stop_timeout: float,
    poll_secs: float,
) -> Iterator[subprocess.Popen[bytes]]:
    """Start a daemon in its own session with its output in ``log`` and wait for ``ready()``
    (skip, or fail under CI, if it exits or never gets ready); on leaving, SIGTERM it, then
    SIGKILL its whole session (helpers it started included) after ``stop_timeout``."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            list(argv), stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True
        )
    try:
        deadline = time.monotonic() + start_timeout
        while not ready():
            if proc.poll() is not None:
                failure = f"{name} exited with {proc.returncode} at startup"
                unavailable(f"{failure}:\n{log_tail(log)}", what)
            if time.monotonic() > deadline:
                unavailable(f"{name} did not answer in {start_timeout}s:\n{log_tail(log)}", what)
            time.sleep(poll_secs)
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=stop_timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


#: What tests import (fixtures and hooks come from angos_core.testing.pytest_plugin).
__all__ = [
    "IN_CI",
    "log_tail",
    "require_tool",
    "run_daemon",
    "run_tool",
    "unavailable",
]

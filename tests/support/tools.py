"""Finding the external programs end-to-end tests drive.

Outside CI a missing tool skips the test with the command that installs it. Under CI=true it
fails: the README's test command installs every tool, so a missing one is a broken setup.
"""

from __future__ import annotations

import os
import shutil

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

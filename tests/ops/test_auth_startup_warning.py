"""``angos serve`` of an anonymous registry on a non-loopback address warns once at startup;
on loopback it does not. (With an authenticator it does not either: tests/unit/
test_auth_config.py::test_exposure_warning, as a subprocess cannot load the test plugin.)"""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.support.angos_server import angos_command, free_port


def startup_lines(tmp_path: Path, bind: str) -> list[str]:
    """The log lines of ``angos serve --bind <bind>`` up to its "serving on" line."""
    config = tmp_path / "c.toml"
    config.write_text(f'[blob_store.fs]\nroot_dir = "{tmp_path / "data"}"\n')
    proc = subprocess.Popen(
        [*angos_command(), "serve", "-c", str(config), "--bind", bind, "--port", str(free_port())],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    lines = []
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line:
                break
            lines.append(line)
            if "serving on" in line:
                break
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert any("serving on" in line for line in lines), lines
    return lines


@pytest.mark.parametrize(("bind", "warned"), [("0.0.0.0", True), ("127.0.0.1", False)])
def test_anonymous_on_the_network_warns_once(tmp_path: Path, bind: str, warned: bool) -> None:
    lines = startup_lines(tmp_path, bind)
    warnings = [line for line in lines if " WARNING " in line]
    if not warned:
        assert warnings == []
        return
    (warning,) = warnings
    assert f"serving {bind} with no authentication" in warning
    assert "[auth.identity.<name>]" in warning and "bind 127.0.0.1" in warning

"""The ``angos`` command: check-config exit codes and messages, serve on a free port."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from angos_core.cli import main

ANGOS = [sys.executable, "-c", "import sys; from angos_core.cli import main; sys.exit(main())"]


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_check_config_ok(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = write(tmp_path / "c.toml", f'[blob_store.fs]\nroot_dir = "{tmp_path}/d"\n')
    assert main(["check-config", "-c", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "config OK" in out
    assert "blob_store=fs, metadata_store=fs, lock_provider=memory, cache=memory" in out


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[blob_store.fs]\nrootdir = "/x"\n', "blob_store.fs.rootdir: unknown key"),
        ('[blob_store.fs]\nsync_to_disk = "yes"\n', "blob_store.fs.sync_to_disk"),
        ("[blob_store.nope]\n", "blob_store 'nope' not found; installed:"),
        ("[server]\nport = 99999\n[blob_store.fs]\n", "server.port"),
        ("not toml [", "not valid TOML"),
        ("[blob_store.fs]\n[blob_store.other]\n", "exactly one backend"),
    ],
)
def test_check_config_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, expected: str
) -> None:
    cfg = write(tmp_path / "c.toml", text)
    assert main(["check-config", "-c", str(cfg)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("angos: config error: ")
    assert expected in err
    assert len(err.splitlines()) == 1


def test_check_config_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", "-c", str(tmp_path / "absent.toml")]) == 1
    assert "cannot read config file" in capsys.readouterr().err


def _serve(args: list[str], cwd: Path) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [*ANGOS, "serve", *args],
        cwd=cwd,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)},
    )
    assert proc.stderr is not None
    deadline = time.monotonic() + 20
    lines = []
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        lines.append(line)
        m = re.search(r"serving on (http://\S+)", line)
        if m:
            return proc, m.group(1)
    proc.kill()
    proc.wait()
    raise AssertionError("angos serve did not start:\n" + "".join(lines))


def _stop(proc: subprocess.Popen[str]) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_serve_with_config_and_port_override(tmp_path: Path) -> None:
    cfg = write(tmp_path / "c.toml", f'[blob_store.fs]\nroot_dir = "{tmp_path}/d"\n')
    proc, url = _serve(["-c", str(cfg), "--bind", "127.0.0.1", "--port", "0"], tmp_path)
    try:
        assert url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(f"{url}/v2/", timeout=5) as resp:
            assert resp.status == 200
            assert resp.headers["Docker-Distribution-API-Version"] == "registry/2.0"
            assert json.loads(resp.read()) == {}
    finally:
        assert _stop(proc) == 0
    assert (tmp_path / "d").is_dir()


def test_serve_embedded_default(tmp_path: Path) -> None:
    proc, url = _serve(["--bind", "127.0.0.1", "--port", "0"], tmp_path)
    try:
        with urllib.request.urlopen(f"{url}/v2/_catalog", timeout=5) as resp:
            assert json.loads(resp.read()) == {"repositories": []}
    finally:
        assert _stop(proc) == 0
    assert (tmp_path / "registry-data").is_dir()


def test_serve_bad_config_exits_2(tmp_path: Path) -> None:
    cfg = write(tmp_path / "c.toml", "[blob_store.fs]\nbogus = 1\n")
    result = subprocess.run(
        [*ANGOS, "serve", "-c", str(cfg)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "blob_store.fs.bogus" in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_backend_that_cannot_open_exits_1(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    cfg = write(tmp_path / "c.toml", f'[blob_store.fs]\nroot_dir = "{blocker}/data"\n')
    result = subprocess.run(
        [*ANGOS, "serve", "-c", str(cfg), "--bind", "127.0.0.1", "--port", "0"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("angos: fs: ")
    assert "Traceback" not in result.stderr

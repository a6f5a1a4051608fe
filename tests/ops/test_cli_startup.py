"""What a new user meets when ``angos serve`` cannot start, run as the real command.

A port in use (one process and ``--workers 2``), a port number out of range and a bind
address the machine lacks each end with one line on stderr naming the problem and the fix,
a non-zero exit, no traceback, and nothing created: the socket is bound before the backends
open (the fs store creates its root when it opens). The startup ``config:`` line shows the
port ``--port`` chose, not the file's.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from angos_core.cli import main
from tests.support.angos_server import angos_command, free_port
from tests.support.cli import one_line, run_angos

pytestmark = pytest.mark.timeout(90)


def test_port_in_use_is_one_line_before_anything_is_created(tmp_path: Path, held_port: int) -> None:
    # The embedded default config: fs in ./registry-data, which must not appear.
    result = run_angos(["serve", "--bind", "127.0.0.1", "--port", str(held_port)], tmp_path)
    assert result.returncode == 1
    assert one_line(result) == (
        f"angos: port {held_port} on 127.0.0.1 is in use (another angos?); stop it or pass "
        "--port (or change [server] port)"
    )
    assert not (tmp_path / "registry-data").exists()


def _workers_config(tmp_path: Path, redis_url: str) -> Path:
    config = tmp_path / "c.toml"
    config.write_text(
        f'[blob_store.fs]\nroot_dir = "{tmp_path / "data"}"\n'
        f'[metadata_store.fs.redis]\nurl = "{redis_url}"\n[cache.redis]\nurl = "{redis_url}"\n'
    )
    return config


def _serve_workers(config: Path, port: int, cwd: Path) -> subprocess.CompletedProcess[str]:
    return run_angos(
        ["serve", "-c", str(config), "--bind", "127.0.0.1", "--port", str(port), "--workers", "2"],
        cwd,
    )


def test_port_in_use_with_workers(tmp_path: Path, held_port: int, redis_url: str) -> None:
    result = _serve_workers(_workers_config(tmp_path, redis_url), held_port, tmp_path)
    assert result.returncode == 1
    line = one_line(result)
    assert line.startswith(f"angos: port {held_port} on 127.0.0.1 is in use (another angos?)")
    assert not (tmp_path / "data").exists()


def test_port_held_with_so_reuseport_is_refused_to_workers(tmp_path: Path, redis_url: str) -> None:
    """A server whose sockets have SO_REUSEPORT (another ``--workers`` angos) holds the port
    too: the workers' own binds would silently join it and split its traffic; the master's
    check, bound without SO_REUSEPORT, refuses."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = int(sock.getsockname()[1])
        result = _serve_workers(_workers_config(tmp_path, redis_url), port, tmp_path)
    assert result.returncode == 1
    assert "is in use" in one_line(result)
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize("port", ["99999", "-1", "eighty"])
def test_bad_port_is_a_usage_error(tmp_path: Path, port: str) -> None:
    result = run_angos(["serve", f"--port={port}"], tmp_path)
    assert result.returncode == 2
    line = one_line(result)
    assert line.startswith("angos serve: argument --port: ")
    assert port in line and "see angos serve --help" in line
    assert not (tmp_path / "registry-data").exists()


def test_bad_workers_is_a_usage_error(tmp_path: Path) -> None:
    result = run_angos(["serve", "--workers", "0"], tmp_path)
    assert result.returncode == 2
    assert one_line(result).startswith("angos serve: argument --workers: must be")


def test_bad_port_in_the_file_is_one_line(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[server]\nport = 70000\n[blob_store.fs]\nroot_dir = "data"\n')
    for command, code in (("serve", 2), ("check-config", 1)):
        result = run_angos([command, "-c", str(config)], tmp_path)
        assert result.returncode == code
        assert one_line(result) == (
            "angos: config error: server.port: must be between 0 and 65535 (0: any free port), "
            "got 70000"
        )
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize(
    ("bind", "expected"),
    [
        # TEST-NET-1 (RFC 5737): never an address of this machine.
        ("192.0.2.1", "angos: 192.0.2.1 is not an address of this machine; pass --bind"),
        ("no-such-host.invalid", "angos: cannot listen on 'no-such-host.invalid': not an address"),
    ],
)
def test_bind_address_the_machine_lacks(tmp_path: Path, bind: str, expected: str) -> None:
    result = run_angos(["serve", "--bind", bind, "--port", "0"], tmp_path)
    assert result.returncode == 1
    assert one_line(result).startswith(expected)
    assert not (tmp_path / "registry-data").exists()


def test_startup_config_line_shows_the_port_override(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(
        '[server]\nport = 8000\nbind_address = "0.0.0.0"\n'
        f'[blob_store.fs]\nroot_dir = "{tmp_path / "data"}"\n'
    )
    port = free_port()
    proc = subprocess.Popen(
        [*angos_command(), "serve", "-c", str(config), "--bind", "127.0.0.1", "--port", str(port)],
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
            if not line or "serving on" in line:
                break
            lines.append(line)
        summary = next(line for line in lines if " angos: config: " in line)
        server = json.loads(summary.split(" angos: config: ", 1)[1])["server"]
        assert server["port"] == port
        assert server["bind_address"] == "127.0.0.1"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_serve_reports_every_config_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[server]\nport = "80"\n[blob_store.fs]\nrootdir = "x"\n')
    assert main(["serve", "-c", str(config)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert [line.split(":", 3)[2].strip() for line in lines] == [
        "server.port",
        "blob_store.fs.rootdir",
    ]

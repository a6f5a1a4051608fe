"""``angos serve`` and ``check-config`` with ``[server.tls]`` files that do not load: one line
naming the key and the fix, exit 2 (``check-config``: 1), no traceback, and nothing bound or
created: the files are checked before the port is bound and before the stores open.

The port given is held by another socket: were the files checked after binding, the error
would be the port in use.
"""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from angos_core.testing.tls import TlsPki
from tests.support.angos_server import angos_command

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def held_port() -> Iterator[int]:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*angos_command(), *args], cwd=cwd, capture_output=True, text=True, timeout=60
    )


def _one_line(result: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def _config(tmp_path: Path, cert: Path, key: Path, extra: str = "") -> Path:
    config = tmp_path / "c.toml"
    config.write_text(
        f'[blob_store.fs]\nroot_dir = "{tmp_path / "data"}"\n{extra}'
        f'[server.tls]\nserver_certificate_bundle = "{cert}"\nserver_private_key = "{key}"\n'
    )
    return config


def _cases(pki: TlsPki, tmp_path: Path) -> dict[str, tuple[Path, Path, str]]:
    garbage = tmp_path / "garbage.pem"
    garbage.write_text(
        "-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n"
    )
    return {
        "missing certificate": (
            tmp_path / "absent.pem",
            pki.server.key_path,
            "server.tls.server_certificate_bundle: cannot read",
        ),
        "malformed certificate": (
            garbage,
            pki.server.key_path,
            "server.tls.server_certificate_bundle: ",
        ),
        "key of another certificate": (
            pki.server.cert_path,
            pki.client.key_path,
            "server.tls.server_private_key: ",
        ),
    }


@pytest.mark.parametrize(
    "case", ["missing certificate", "malformed certificate", "key of another certificate"]
)
@pytest.mark.parametrize("workers", [1, 2])
def test_serve_refuses_tls_files_that_do_not_load_before_binding(
    tls_pki: TlsPki, tmp_path: Path, held_port: int, redis_url: str, case: str, workers: int
) -> None:
    cert, key, start = _cases(tls_pki, tmp_path)[case]
    shared = (
        f'[metadata_store.fs.redis]\nurl = "{redis_url}"\n[cache.redis]\nurl = "{redis_url}"\n'
        if workers > 1
        else ""
    )
    config = _config(tmp_path, cert, key, shared)
    args = ["serve", "-c", str(config), "--bind", "127.0.0.1", "--port", str(held_port)]
    result = _run([*args, "--workers", str(workers)], tmp_path)
    assert result.returncode == 2, result.stderr
    line = _one_line(result)
    assert line.startswith(f"angos: config error: {start}"), line
    assert "; set" in line or "set the key" in line  # the fix
    assert not (tmp_path / "data").exists()


def test_check_config_reads_the_tls_files(tls_pki: TlsPki, tmp_path: Path) -> None:
    cert, key, start = _cases(tls_pki, tmp_path)["key of another certificate"]
    result = _run(["check-config", "-c", str(_config(tmp_path, cert, key))], tmp_path)
    assert result.returncode == 1
    assert _one_line(result).startswith(f"angos: config error: {start}")
    assert "is not the private key of the certificate" in result.stderr

    good = _config(tmp_path, tls_pki.server.cert_path, tls_pki.server.key_path)
    result = _run(["check-config", "-c", str(good)], tmp_path)
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "data").exists()

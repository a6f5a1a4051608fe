"""``angos serve`` and ``check-config`` with ``[server.tls]`` files that do not load: one line
naming the key and the fix, exit 2 (``check-config``: 1), no traceback, and nothing bound or
created: the files are checked before the port is bound and before the stores open.

The port given is held by another socket: were the files checked after binding, the error
would be the port in use.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from angos_core.testing.tls import TlsPki
from tests.support.cli import one_line, run_angos

pytestmark = pytest.mark.timeout(90)


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
    result = run_angos([*args, "--workers", str(workers)], tmp_path)
    assert result.returncode == 2, result.stderr
    line = one_line(result)
    assert line.startswith(f"angos: config error: {start}"), line
    assert "; set" in line or "set the key" in line  # the fix
    assert not (tmp_path / "data").exists()


def test_check_config_reads_the_tls_files(tls_pki: TlsPki, tmp_path: Path) -> None:
    cert, key, start = _cases(tls_pki, tmp_path)["key of another certificate"]
    result = run_angos(["check-config", "-c", str(_config(tmp_path, cert, key))], tmp_path)
    assert result.returncode == 1
    assert one_line(result).startswith(f"angos: config error: {start}")
    assert "is not the private key of the certificate" in result.stderr

    good = _config(tmp_path, tls_pki.server.cert_path, tls_pki.server.key_path)
    result = run_angos(["check-config", "-c", str(good)], tmp_path)
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "data").exists()

"""What responses must not tell a client (issue 10, finding 9): absolute local paths of a
failing filesystem (they go to the log) and the server's software versions."""

from __future__ import annotations

import logging
import re
import shutil
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from angos_core import layout
from angos_core.errors import ConfigError
from angos_core.http.app import config_from_toml
from tests.support.angos_server import AngosServerFactory
from tests.support.api import Api, fs_toml, open_api


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    async with open_api(tmp_path / "data") as api:
        yield api


def _break_uploads_dir(root: Path, name: str) -> Path:
    """The repository's upload directory replaced by a file: every upload start fails."""
    uploads = root / layout.uploads_prefix(name).rstrip("/")
    uploads.parent.mkdir(parents=True, exist_ok=True)
    uploads.write_bytes(b"not a directory")
    return uploads


async def test_503_body_names_no_local_path(
    api: Api, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _break_uploads_dir(api.root, "lib/app")
    with caplog.at_level(logging.WARNING):
        resp = await api.request("POST", "/v2/lib/app/blobs/uploads/")
    assert resp.status == 503
    text = await resp.text()
    assert (await resp.json())["errors"][0]["code"] == "UNAVAILABLE"
    assert str(tmp_path) not in text, text
    assert "upload" in (await resp.json())["errors"][0]["message"]
    # The operator still learns where.
    assert str(api.root) in caplog.text


async def test_readyz_body_names_no_local_path(
    api: Api, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    shutil.rmtree(api.root)
    api.root.write_bytes(b"not a directory")
    with caplog.at_level(logging.WARNING):
        resp = await api.get("/readyz")
    assert resp.status == 503
    text = await resp.text()
    assert str(tmp_path) not in text, text
    body = await resp.json()
    assert "root_dir is not a directory" in body["backends"]["blob_store"]["error"]
    assert str(api.root) in caplog.text


async def test_server_header_names_no_versions(api: Api) -> None:
    digest = await api.push_blob("lib/app", b"x" * 100)
    for method, path in (
        ("GET", "/v2/"),
        ("GET", "/nowhere"),
        ("GET", f"/v2/lib/app/blobs/{digest}"),  # sendfile
        ("HEAD", f"/v2/lib/app/blobs/{digest}"),
        ("GET", "/v2/lib/app/manifests/missing"),
        ("GET", "/healthz"),
    ):
        resp = await api.request(method, path)
        assert resp.headers["Server"] == "angos", (method, path, resp.headers["Server"])


async def test_server_header_is_configurable(tmp_path: Path) -> None:
    async with open_api(tmp_path / "data", '[server]\nserver_header = "registry"\n') as api:
        resp = await api.get("/v2/")
        assert resp.headers["Server"] == "registry"


@pytest.mark.parametrize("value", ["", "a\\r\\nX-Evil: 1", "caf\\u00e9"])
def test_server_header_must_be_printable_ascii(tmp_path: Path, value: str) -> None:
    with pytest.raises(
        ConfigError, match=r"server\.server_header: must be non-empty printable ASCII"
    ):
        config_from_toml(fs_toml(tmp_path, f'[server]\nserver_header = "{value}"\n'))


def test_serve_answers_malformed_http_without_versions(
    angos_server_factory: AngosServerFactory, tmp_path: Path
) -> None:
    # aiohttp answers a request it cannot parse itself, before any app code runs.
    server = angos_server_factory(fs_toml(tmp_path / "data"))
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"GET /v2/ HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n")
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    head = reply.split(b"\r\n\r\n", 1)[0].decode("latin-1")
    assert re.match(r"HTTP/1\.[01] 400 ", head), head
    assert "Server: angos" in head.split("\r\n"), head

"""Angos and CNCF Distribution share one storage layout: each serves what the other wrote.

Distribution (Debian ``docker-registry``) runs for real on a loopback port over the same
directory; Angos is the aiohttp app on its fs backend rooted at Distribution's
``<rootdirectory>/docker/registry``.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from aiohttp import ClientSession

from angos_core.oci import mediatypes as mt
from tests.support.api import DOCKER_CONFIG, DOCKER_LAYER, descriptor, digest_of, open_api
from tests.support.tools import require_tool

CONFIG = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
LAYER = bytes(range(256)) * 300
NAME = "interop/app"


class Distribution:
    def __init__(self, root: Path) -> None:
        self.root = root
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = root.parent / "distribution.yml"
        self.config.write_text(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n"
            f"    rootdirectory: {root}\n  delete:\n    enabled: true\n"
            f"http:\n  addr: 127.0.0.1:{self.port}\n"
        )

    @property
    def angos_root(self) -> Path:
        return self.root / "docker" / "registry"

    @contextmanager
    def run(self, binary: str) -> Iterator[None]:
        proc = subprocess.Popen(
            [binary, "serve", str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 20
            while True:
                try:
                    with urllib.request.urlopen(f"{self.url}/v2/", timeout=1):
                        break
                except urllib.error.HTTPError:
                    break  # it answers (401 when it asks for credentials): it is up
                except (urllib.error.URLError, ConnectionError):
                    if time.monotonic() > deadline or proc.poll() is not None:
                        raise AssertionError("docker-registry did not start") from None
                    time.sleep(0.1)
            yield
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture
def distribution(tmp_path: Path) -> Iterator[tuple[Distribution, str]]:
    binary = require_tool("docker-registry", "apt-get install docker-registry")
    yield Distribution(tmp_path / "dist"), binary


def _manifest() -> bytes:
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": mt.DOCKER_MANIFEST,
            "config": descriptor(CONFIG, DOCKER_CONFIG),
            "layers": [descriptor(LAYER, DOCKER_LAYER)],
        },
        indent=3,
    ).encode()


async def _push(session: ClientSession, base: str) -> str:
    for blob in (CONFIG, LAYER):
        resp = await session.post(f"{base}/v2/{NAME}/blobs/uploads/")
        assert resp.status == 202
        loc = resp.headers["Location"]
        loc = loc if loc.startswith("http") else base + loc
        sep = "&" if "?" in loc else "?"
        resp = await session.put(f"{loc}{sep}digest={digest_of(blob)}", data=blob)
        assert resp.status == 201, await resp.text()
    body = _manifest()
    resp = await session.put(
        f"{base}/v2/{NAME}/manifests/v1", data=body, headers={"Content-Type": mt.DOCKER_MANIFEST}
    )
    assert resp.status == 201, await resp.text()
    return resp.headers["Docker-Content-Digest"]


async def _pull(session: ClientSession, base: str, digest: str) -> None:
    headers = {"Accept": mt.DOCKER_MANIFEST}
    resp = await session.get(f"{base}/v2/{NAME}/manifests/v1", headers=headers)
    assert resp.status == 200
    assert resp.headers["Docker-Content-Digest"] == digest
    assert await resp.read() == _manifest()
    for blob in (CONFIG, LAYER):
        resp = await session.get(f"{base}/v2/{NAME}/blobs/{digest_of(blob)}")
        assert resp.status == 200
        assert await resp.read() == blob
    resp = await session.get(f"{base}/v2/{NAME}/tags/list")
    assert (await resp.json())["tags"] == ["v1"]


async def test_angos_serves_what_distribution_wrote(
    distribution: tuple[Distribution, str],
) -> None:
    dist, binary = distribution
    async with ClientSession() as session:
        with dist.run(binary):
            digest = await _push(session, dist.url)
    async with open_api(dist.angos_root) as api:
        await _pull(api.client.session, str(api.client.make_url("")).rstrip("/"), digest)
        catalog = await (await api.get("/v2/_catalog")).json()
        assert catalog == {"repositories": [NAME]}


async def test_distribution_serves_what_angos_wrote(
    distribution: tuple[Distribution, str],
) -> None:
    dist, binary = distribution
    async with open_api(dist.angos_root) as api:
        digest = await _push(api.client.session, str(api.client.make_url("")).rstrip("/"))
    async with ClientSession() as session:
        with dist.run(binary):
            await _pull(session, dist.url, digest)
            resp = await session.get(f"{dist.url}/v2/_catalog")
            assert (await resp.json())["repositories"] == [NAME]

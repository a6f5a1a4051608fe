"""Pull-through from real upstreams: CNCF Distribution (Debian ``docker-registry``) with
htpasswd auth, and a second Angos with its token service (``angos-auth-token``)."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import bcrypt
import pytest
from aiohttp import ClientSession

from tests.integration.test_api_distribution_interop import (
    CONFIG,
    LAYER,
    NAME,
    Distribution,
    _manifest,
    _push,
)
from tests.support.api import digest_of, open_api
from tests.support.tools import require_tool
from tests.support.upstream_proxy import upstream_toml

USER, PASSWORD = "puller", "Dist-s3cret"
ACCEPT = {"Accept": "application/vnd.docker.distribution.manifest.v2+json"}


class HtpasswdDistribution(Distribution):
    def __init__(self, root: Path) -> None:
        super().__init__(root)
        htpasswd = root.parent / "htpasswd"
        hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
        htpasswd.write_text(f"{USER}:{hashed}\n")
        self.config.write_text(
            self.config.read_text()
            + f"auth:\n  htpasswd:\n    realm: upstream\n    path: {htpasswd}\n"
        )


@pytest.fixture
def distribution(tmp_path: Path) -> Iterator[HtpasswdDistribution]:
    binary = require_tool("docker-registry", "apt-get install docker-registry")
    dist = HtpasswdDistribution(tmp_path / "dist")
    with dist.run(binary):
        yield dist


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


async def test_pulls_through_distribution_with_htpasswd(
    distribution: HtpasswdDistribution, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with ClientSession(headers=basic(USER, PASSWORD)) as session:
        digest = await _push(session, distribution.url)
    toml = upstream_toml("dist", distribution.url, creds=(USER, PASSWORD))
    async with open_api(tmp_path / "cache", toml) as cache:
        resp = await cache.get(f"/v2/dist/{NAME}/manifests/v1", headers=ACCEPT)
        assert resp.status == 200, await resp.text()
        assert resp.headers["Docker-Content-Digest"] == digest
        assert await resp.read() == _manifest()
        for blob in (CONFIG, LAYER):
            resp = await cache.get(f"/v2/dist/{NAME}/blobs/{digest_of(blob)}")
            assert resp.status == 200
            assert await resp.read() == blob
    async with open_api(
        tmp_path / "wrong", upstream_toml("dist", distribution.url, creds=(USER, "nope"))
    ) as cache:
        resp = await cache.get(f"/v2/dist/{NAME}/manifests/v1", headers=ACCEPT)
        assert resp.status == 503
        body = await resp.text()
        assert distribution.url in body and "nope" not in body
    assert PASSWORD not in caplog.text


TOKEN_AUTH = f"""
[auth.htpasswd]
path = "{{htpasswd}}"

[auth.token_service]
secret_key = "{base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()}"

[global.access_policy]
rules = ["identity.username == '{USER}'"]
"""


async def test_pulls_through_an_angos_token_service(tmp_path: Path) -> None:
    htpasswd = tmp_path / "htpasswd"
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
    htpasswd.write_text(f"{USER}:{hashed}\n")
    auth = TOKEN_AUTH.replace("{htpasswd}", str(htpasswd))
    async with open_api(tmp_path / "up", auth, headers=basic(USER, PASSWORD)) as up:
        digest, body = await up.push_image("lib/app", "v1", layer=LAYER)
        url = str(up.client.server.make_url("")).rstrip("/")
        # The upstream really asks for a token: an anonymous pull is refused there.
        async with ClientSession() as anonymous:
            resp = await anonymous.get(f"{url}/v2/lib/app/manifests/v1")
            assert resp.status == 401
            assert resp.headers["WWW-Authenticate"].startswith("Bearer ")
        async with open_api(
            tmp_path / "cache", upstream_toml("angos", url, creds=(USER, PASSWORD))
        ) as cache:
            resp = await cache.get("/v2/angos/lib/app/manifests/v1")
            assert resp.status == 200, await resp.text()
            assert resp.headers["Docker-Content-Digest"] == digest
            assert await resp.read() == body
            resp = await cache.get(f"/v2/angos/lib/app/blobs/{digest_of(LAYER)}")
            assert resp.status == 200
            assert await resp.read() == LAYER

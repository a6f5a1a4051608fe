"""Basic authentication over HTTP with the angos-auth-basic authenticators: ``[auth.identity]``
users and an ``[auth.htpasswd]`` file. Login (``GET /v2/``), push and pull with Basic; a wrong
password is 401; no password or hash in any log line or error body."""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from angos_auth_basic import IdentityAuthenticator
from angos_auth_basic.testing import CountingVerify, cheap_argon2, cheap_bcrypt

from angos_core.http import make_app_from_toml
from angos_core.http.live import LIVE
from angos_core.testing.api import Api, error_code, fs_toml

ALICE_PW = "alice-correct-horse"
CAROL_PW = "carol-battery-staple"
SECRETS = (ALICE_PW, CAROL_PW, "alice-wrong-pw")


def authorization(username: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def identity_toml() -> str:
    return (
        "[auth.identity.alice]\n"
        'username = "alice"\n'
        f'password = "{cheap_argon2(ALICE_PW)}"\n'
        "[auth.identity.bob]\n"
        'username = "bob"\n'
        f'password = "{cheap_bcrypt("bob-pw")}"\n'
    )


class Served:
    """The app, a client logged in as ``username`` (an :class:`Api`), and ``anonymous``: a
    session sending only the headers each request gives."""

    def __init__(self, api: Api, anonymous: aiohttp.ClientSession) -> None:
        self.api = api
        self.anonymous = anonymous

    def url(self, path: str) -> str:
        return str(self.api.client.make_url(path))

    async def get(self, path: str, **headers: str) -> aiohttp.ClientResponse:
        return await self.anonymous.get(self.url(path), headers=headers)


@asynccontextmanager
async def served(
    tmp_path: Path, auth_toml: str, username: str = "alice", password: str = ALICE_PW
) -> AsyncIterator[Served]:
    root = tmp_path / "data"
    app: web.Application = make_app_from_toml(fs_toml(root, auth_toml))
    client: TestClient[web.Request, web.Application]
    async with (
        TestClient(TestServer(app), headers=authorization(username, password)) as client,
        aiohttp.ClientSession() as anonymous,
    ):
        yield Served(Api(client, root, app), anonymous)


async def test_login_push_pull_with_basic(tmp_path: Path) -> None:
    async with served(tmp_path, identity_toml()) as s:
        login = await s.api.get("/v2/")
        assert login.status == 200, await login.text()
        digest, body = await s.api.push_image("team/app", "v1")

        accept = {"Accept": "application/vnd.oci.image.manifest.v1+json"}
        pulled = await s.api.get("/v2/team/app/manifests/v1", headers=accept)
        assert pulled.status == 200 and await pulled.read() == body
        assert pulled.headers["Docker-Content-Digest"] == digest
        # bcrypt users too.
        bob = await s.get("/v2/team/app/tags/list", **authorization("bob", "bob-pw"))
        assert bob.status == 200 and (await bob.json())["tags"] == ["v1"]


async def test_anonymous_gets_the_basic_challenge(tmp_path: Path) -> None:
    async with served(tmp_path, identity_toml()) as s:
        await s.api.push_image("team/app", "v1")
        for path in ("/v2/", "/v2/team/app/manifests/v1", "/v2/_catalog"):
            resp = await s.get(path)
            assert resp.status == 401, path
            assert resp.headers["WWW-Authenticate"] == 'Basic realm="angos"'
            assert await error_code(resp) == "UNAUTHORIZED"
        upload = await s.anonymous.post(s.url("/v2/team/app/blobs/uploads/"))
        assert upload.status == 401
        assert upload.headers["WWW-Authenticate"] == 'Basic realm="angos"'
        # The probes stay open.
        assert (await s.get("/healthz")).status == 200


async def test_wrong_password_is_401_and_unknown_user_looks_the_same(tmp_path: Path) -> None:
    async with served(tmp_path, identity_toml()) as s:
        wrong = await s.get("/v2/", **authorization("alice", "alice-wrong-pw"))
        assert wrong.status == 401
        assert wrong.headers["WWW-Authenticate"] == 'Basic realm="angos"'
        wrong_body = await wrong.json()
        assert wrong_body["errors"][0]["code"] == "UNAUTHORIZED"
        # A username nobody has: the same status, challenge and body, so a client cannot
        # tell which usernames exist.
        unknown = await s.get("/v2/", **authorization("mallory", "alice-wrong-pw"))
        assert unknown.status == 401
        assert unknown.headers["WWW-Authenticate"] == wrong.headers["WWW-Authenticate"]
        assert await unknown.json() == wrong_body
        # An empty password is a wrong password.
        assert (await s.get("/v2/", **authorization("alice", ""))).status == 401


async def test_requests_after_login_are_not_verified_again(tmp_path: Path) -> None:
    async with served(tmp_path, identity_toml()) as s:
        chain = s.api.app[LIVE].current.chain
        assert chain is not None
        (authenticator,) = chain.authenticators
        assert isinstance(authenticator, IdentityAuthenticator)
        counting = CountingVerify()
        authenticator.verifier.verify = counting
        await s.api.push_image("team/app", "v1")  # five requests
        await asyncio.gather(*(s.api.get("/v2/team/app/manifests/v1") for _ in range(10)))
        assert counting.count == 1
        assert (await s.get("/v2/", **authorization("alice", "alice-wrong-pw"))).status == 401
        assert counting.count == 2


async def test_htpasswd_login_push_pull_and_a_user_added_without_restart(tmp_path: Path) -> None:
    htpasswd = tmp_path / "htpasswd"
    htpasswd.write_text(f"# users\nalice:{cheap_bcrypt(ALICE_PW)}\n")
    # No failure limit: the polling below fails on purpose until the file is seen.
    toml = f'[auth.htpasswd]\npath = "{htpasswd}"\n[auth.failure_limit]\nmax_failures = 0\n'
    async with served(tmp_path, toml) as s:
        assert (await s.api.get("/v2/")).status == 200
        await s.api.push_image("team/app", "v1")
        assert (await s.get("/v2/", **authorization("carol", CAROL_PW))).status == 401

        with htpasswd.open("a") as f:
            f.write(f"carol:{cheap_bcrypt(CAROL_PW)}\n")
        # Seen within about a second; a loaded machine gets a few more.
        for _ in range(100):
            resp = await s.get("/v2/team/app/tags/list", **authorization("carol", CAROL_PW))
            if resp.status == 200:
                break
            await asyncio.sleep(0.1)
        assert resp.status == 200 and (await resp.json())["tags"] == ["v1"]

        # Removed: refused again, though alice had just been remembered.
        htpasswd.write_text(f"carol:{cheap_bcrypt(CAROL_PW)}\n")
        for _ in range(100):
            resp = await s.api.get("/v2/")
            if resp.status == 401:
                break
            await asyncio.sleep(0.1)
        assert resp.status == 401


async def test_no_password_or_hash_in_any_log_line_or_error_body(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    htpasswd = tmp_path / "htpasswd"
    htpasswd.write_text(f"carol:{cheap_bcrypt(CAROL_PW)}\n")
    toml = identity_toml() + f'[auth.htpasswd]\npath = "{htpasswd}"\n'
    hashes = (cheap_argon2(ALICE_PW), cheap_bcrypt("bob-pw"), cheap_bcrypt(CAROL_PW))
    bodies: list[str] = []
    caplog.set_level(logging.DEBUG)
    async with served(tmp_path, toml) as s:
        await s.api.push_image("team/app", "v1")
        for username, password in (
            ("alice", "alice-wrong-pw"),
            ("carol", "alice-wrong-pw"),
            ("carol", CAROL_PW),
            ("nobody", CAROL_PW),
            ("alice", ALICE_PW),
        ):
            for path in ("/v2/", "/v2/team/app/manifests/v1", "/v2/team/app/blobs/uploads/"):
                resp = await s.get(path, **authorization(username, password))
                bodies.append(await resp.text())
        htpasswd.write_text("carol:$apr1$r31.....$HqJZimcKQFAMYayBlzkrA/\n")  # a reload fails
        await asyncio.sleep(1.1)
        bodies.append(await (await s.get("/v2/", **authorization("carol", CAROL_PW))).text())
    lines = [record.getMessage() for record in caplog.records]
    assert any("htpasswd" in line and "still serving" in line for line in lines)
    for text in [*lines, *bodies]:
        for secret in (*SECRETS, *hashes, "HqJZimcKQFAMYayBlzkrA"):
            assert secret not in text, (secret, text)
        # Not even the start of a hash: the salt is in its first characters.
        assert "$argon2id$" not in text and "$2b$04$" not in text, text

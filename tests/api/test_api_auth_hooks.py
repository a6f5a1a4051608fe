"""The hook points the auth plugins build on: a route opened to anonymous requests
(``allow_anonymous``, for a token endpoint), the identity seen by a handler
(``identity_of``), and ``Unauthorized`` raised below the middleware getting the challenge."""

from __future__ import annotations

import base64
from pathlib import Path

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from angos_core.errors import Unauthorized
from angos_core.http import make_app_from_toml
from angos_core.http.auth import allow_anonymous, identity_of
from angos_core.testing.api import fs_toml
from tests.support.auth import TEST_AUTH_PLUGIN

PASSWORD = "alice-correct-password"
ALICE = {"Authorization": "Basic " + base64.b64encode(f"alice:{PASSWORD}".encode()).decode()}


async def whoami(request: web.Request) -> web.Response:
    identity = identity_of(request)
    if identity is None:
        raise Unauthorized("this endpoint wants credentials")
    return web.json_response({"id": identity.id, "provider": identity.provider})


def app_with_probe(tmp_path: Path) -> web.Application:
    toml = fs_toml(tmp_path, f'[auth.static.alice]\npassword = "{PASSWORD}"\n')
    app = make_app_from_toml(toml, [TEST_AUTH_PLUGIN])
    app.router.add_get("/whoami", whoami)
    app.router.add_get("/open-whoami", whoami)
    allow_anonymous(app, "/open-whoami")
    return app


async def test_allow_anonymous_and_identity_of(tmp_path: Path) -> None:
    client: TestClient[web.Request, web.Application]
    async with TestClient(TestServer(app_with_probe(tmp_path))) as client:
        # A closed route: the middleware answers before the handler.
        resp = await client.get("/whoami")
        assert resp.status == 401
        assert resp.headers["WWW-Authenticate"] == 'Basic realm="angos"'
        assert (await resp.json())["errors"][0]["message"] == "authentication required"
        # An opened route: the handler runs and its Unauthorized gets the challenge.
        resp = await client.get("/open-whoami")
        assert resp.status == 401
        assert resp.headers["WWW-Authenticate"] == 'Basic realm="angos"'
        assert (await resp.json())["errors"][0]["message"] == "this endpoint wants credentials"
        # Credentials presented to an opened route are still checked.
        wrong = {"Authorization": "Basic " + base64.b64encode(b"alice:wrong-one!").decode()}
        assert (await client.get("/open-whoami", headers=wrong)).status == 401
        for path in ("/whoami", "/open-whoami"):
            resp = await client.get(path, headers=ALICE)
            assert resp.status == 200
            assert await resp.json() == {"id": "alice", "provider": "static"}


async def test_no_auth_section_changes_nothing(tmp_path: Path) -> None:
    """Without [auth] the middleware is not installed: anonymous as before."""
    app = make_app_from_toml(fs_toml(tmp_path), [TEST_AUTH_PLUGIN])
    app.router.add_get("/whoami", whoami)
    client: TestClient[web.Request, web.Application]
    async with TestClient(TestServer(app)) as client:
        assert (await client.get("/v2/")).status == 200
        resp = await client.get("/whoami", headers=ALICE)  # nobody checks: anonymous
        assert resp.status == 401 and "WWW-Authenticate" not in resp.headers

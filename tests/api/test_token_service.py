"""The token service over HTTP: GET/POST /token, Bearer tokens for push and pull, the
challenge's scope, access enforcement; and tokens of a trusted external token server.

The caller's password is checked by the test-only Basic authenticator ``static``
(tests/support/auth.py, registered through ``extra_plugins``), so these tests need no other
authentication plugin.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from aiohttp import ClientResponse
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from angos_core.oci import mediatypes as mt
from tests.support.api import OCI_CONFIG, OCI_LAYER, Api, descriptor, digest_of
from tests.support.auth import TEST_AUTH_PLUGIN
from tests.support.storage import Storage

pytestmark = pytest.mark.shapes("fs")  # authentication, not storage, is under test

SECRET = base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()
PASSWORD = "s3cret-Pa55word"
NAME = "team/app"


AUTH_TOML = f"""
[auth.static.alice]
password = "{PASSWORD}"

[auth.token_service]
secret_key = "{SECRET}"
"""


def basic(user: str = "alice", password: str = PASSWORD) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def api(storage: Storage) -> AsyncIterator[Api]:
    async with storage.open_api(AUTH_TOML, extra_plugins=[TEST_AUTH_PLUGIN]) as api:
        yield api


async def get_token(api: Api, *scopes: str, **params: str) -> dict[str, Any]:
    query = [("service", "angos"), *(("scope", s) for s in scopes), *params.items()]
    resp = await api.get("/token", params=query, headers=basic())
    assert resp.status == 200, await resp.text()
    body: dict[str, Any] = await resp.json()
    return body


async def push(api: Api, token: str, name: str = NAME, tag: str = "v1") -> ClientResponse:
    """Push one image with ``token``; the first refused request's response, or the
    manifest PUT's."""
    config, layer = b'{"architecture":"amd64","os":"linux"}', b"layer"
    for data in (config, layer):
        resp = await api.client.post(
            f"/v2/{name}/blobs/uploads/?digest={digest_of(data)}", data=data, headers=bearer(token)
        )
        if resp.status != 201:
            return resp
    manifest = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "config": descriptor(config, OCI_CONFIG),
        "layers": [descriptor(layer, OCI_LAYER)],
    }
    return await api.client.put(
        f"/v2/{name}/manifests/{tag}",
        data=json.dumps(manifest).encode(),
        headers={"Content-Type": mt.OCI_MANIFEST, **bearer(token)},
    )


def challenge_params(resp: ClientResponse) -> dict[str, str]:
    scheme, _, rest = resp.headers["WWW-Authenticate"].partition(" ")
    assert scheme == "Bearer"
    params = {}
    for part in rest.split('",'):
        key, _, value = part.partition("=")
        params[key.strip()] = value.strip().strip('"')
    return params


async def test_basic_credentials_get_a_token_that_pushes_and_pulls(api: Api) -> None:
    body = await get_token(api, f"repository:{NAME}:pull,push")
    assert body["token"] == body["access_token"]
    assert body["expires_in"] == 300
    assert body["issued_at"].endswith("Z")
    resp = await push(api, body["token"])
    assert resp.status == 201, await resp.text()
    pulled = await api.get(f"/v2/{NAME}/manifests/v1", headers=bearer(body["token"]))
    assert pulled.status == 200
    claims = jwt.decode(body["token"], options={"verify_signature": False})
    assert claims["access"] == [{"type": "repository", "name": NAME, "actions": ["pull", "push"]}]
    assert claims["sub"] == "alice" and claims["aud"] == "angos"


async def test_a_pull_token_pulls_and_cannot_push(api: Api) -> None:
    pusher = await get_token(api, f"repository:{NAME}:pull,push")
    assert (await push(api, pusher["token"])).status == 201
    puller = (await get_token(api, f"repository:{NAME}:pull"))["token"]
    assert (await api.get(f"/v2/{NAME}/manifests/v1", headers=bearer(puller))).status == 200
    refused = await push(api, puller, tag="v2")
    assert refused.status == 401
    params = challenge_params(refused)
    assert params["scope"] == f"repository:{NAME}:pull,push"
    assert params["error"] == "insufficient_scope"
    # Another repository is not covered either, nor deleting.
    assert (await api.get("/v2/other/tags/list", headers=bearer(puller))).status == 401
    resp = await api.request("DELETE", f"/v2/{NAME}/manifests/v1", headers=bearer(puller))
    assert resp.status == 401 and challenge_params(resp)["scope"] == f"repository:{NAME}:delete"


async def test_scopes_repeat_and_merge(api: Api) -> None:
    body = await get_token(
        api, f"repository:{NAME}:pull", f"repository:{NAME}:push registry:catalog:*"
    )
    claims = jwt.decode(body["token"], options={"verify_signature": False})
    assert claims["access"] == [
        {"type": "repository", "name": NAME, "actions": ["pull", "push"]},
        {"type": "registry", "name": "catalog", "actions": ["*"]},
    ]
    assert body["scope"] == f"repository:{NAME}:pull,push registry:catalog:*"


async def test_the_catalog_needs_the_catalog_scope(api: Api) -> None:
    without = (await get_token(api, f"repository:{NAME}:pull"))["token"]
    resp = await api.get("/v2/_catalog", headers=bearer(without))
    assert resp.status == 401 and challenge_params(resp)["scope"] == "registry:catalog:*"
    with_catalog = (await get_token(api, "registry:catalog:*"))["token"]
    assert (await api.get("/v2/_catalog", headers=bearer(with_catalog))).status == 200


async def test_the_challenge_names_the_requests_scope(api: Api) -> None:
    base = await api.get("/v2/")
    assert base.status == 401
    params = challenge_params(base)
    assert params["realm"] == f"http://{base.url.host}:{base.url.port}/token"
    assert params["service"] == "angos"
    assert "scope" not in params
    pull = await api.get(f"/v2/{NAME}/manifests/latest")
    assert challenge_params(pull)["scope"] == f"repository:{NAME}:pull"
    head = await api.head(f"/v2/{NAME}/blobs/sha256:{'0' * 64}")
    assert head.status == 401
    assert challenge_params(head)["scope"] == f"repository:{NAME}:pull"
    upload = await api.client.post(f"/v2/{NAME}/blobs/uploads/")
    assert challenge_params(upload)["scope"] == f"repository:{NAME}:pull,push"
    mount = await api.client.post(
        f"/v2/{NAME}/blobs/uploads/?mount=sha256:{'0' * 64}&from=lib/base"
    )
    assert challenge_params(mount)["scope"] == (
        f"repository:{NAME}:pull,push repository:lib/base:pull"
    )
    catalog = await api.get("/v2/_catalog")
    assert challenge_params(catalog)["scope"] == "registry:catalog:*"


async def test_a_token_with_no_scope_reaches_only_the_base(api: Api) -> None:
    token = (await get_token(api))["token"]
    assert (await api.get("/v2/", headers=bearer(token))).status == 200
    assert (await api.get(f"/v2/{NAME}/tags/list", headers=bearer(token))).status == 401


async def test_anonymous_and_wrong_credentials_get_no_token(api: Api) -> None:
    anonymous = await api.get(
        "/token", params={"service": "angos", "scope": f"repository:{NAME}:pull"}
    )
    assert anonymous.status == 401
    assert anonymous.headers["WWW-Authenticate"] == 'Basic realm="angos"'
    assert "token" not in await anonymous.json()
    wrong = await api.get("/token", params={"service": "angos"}, headers=basic(password="nope"))
    assert wrong.status == 401
    assert wrong.headers["WWW-Authenticate"] == 'Basic realm="angos"'


async def test_bad_token_requests_are_400(api: Api) -> None:
    other = await api.get("/token", params={"service": "elsewhere"}, headers=basic())
    assert other.status == 400
    assert "'angos'" in (await other.json())["errors"][0]["message"]
    bad = await api.get("/token", params={"scope": "repository-no-actions"}, headers=basic())
    assert bad.status == 400


async def test_forged_and_expired_tokens_get_401_with_the_challenge(api: Api) -> None:
    token = (await get_token(api, f"repository:{NAME}:pull"))["token"]
    claims = jwt.decode(token, options={"verify_signature": False})
    claims["access"][0]["actions"] = ["pull", "push"]
    forged = jwt.encode(
        claims, b"another-secret-of-32-bytes-long!", algorithm="HS256", headers={"typ": "angos+jwt"}
    )
    expired = jwt.encode(
        {**claims, "exp": claims["iat"] - 3600},
        base64.b64decode(SECRET),
        algorithm="HS256",
        headers={"typ": "angos+jwt"},
    )
    for bad in (forged, expired):
        resp = await api.get(f"/v2/{NAME}/tags/list", headers=bearer(bad))
        assert resp.status == 401
        assert challenge_params(resp)["realm"].endswith("/token")
        assert bad not in await resp.text()


async def test_post_password_grant_and_refresh_token_grant(api: Api) -> None:
    form = {
        "grant_type": "password",
        "username": "alice",
        "password": PASSWORD,
        "service": "angos",
        "client_id": "containerd",
        "scope": f"repository:{NAME}:pull,push",
        "access_type": "offline",
    }
    resp = await api.client.post("/token", data=form)
    assert resp.status == 200, await resp.text()
    assert resp.headers["Cache-Control"] == "no-store"
    body = await resp.json()
    assert set(body) >= {"access_token", "expires_in", "issued_at", "refresh_token", "scope"}
    assert (await push(api, body["access_token"])).status == 201

    refreshed = await api.client.post(
        "/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": body["refresh_token"],
            "service": "angos",
            "client_id": "containerd",
            "scope": f"repository:{NAME}:pull",
        },
    )
    assert refreshed.status == 200, await refreshed.text()
    again = await refreshed.json()
    assert "refresh_token" not in again  # not asked for (access_type)
    assert (
        await api.get(f"/v2/{NAME}/manifests/v1", headers=bearer(again["access_token"]))
    ).status == 200
    # A refresh token is not an access token, nor the reverse.
    assert (await api.get("/v2/", headers=bearer(body["refresh_token"]))).status == 401
    swapped = await api.client.post(
        "/token", data={"grant_type": "refresh_token", "refresh_token": body["access_token"]}
    )
    assert swapped.status == 401 and (await swapped.json())["error"] == "invalid_grant"


async def test_post_refusals_let_clients_fall_back(api: Api) -> None:
    wrong = await api.client.post(
        "/token", data={"grant_type": "password", "username": "alice", "password": "nope"}
    )
    assert wrong.status == 401  # containerd and docker fall back to GET on 401
    assert (await wrong.json())["error"] == "invalid_grant"
    unknown = await api.client.post(
        "/token", data={"grant_type": "password", "username": "mallory", "password": "x"}
    )
    assert unknown.status == 401
    grant = await api.client.post("/token", data={"grant_type": "authorization_code"})
    assert grant.status == 400 and (await grant.json())["error"] == "unsupported_grant_type"
    not_form = await api.client.post("/token", json={"grant_type": "password"})
    assert not_form.status == 400


async def test_get_offline_token_returns_a_refresh_token(api: Api) -> None:
    body = await get_token(api, offline_token="true", client_id="docker")
    assert body.get("refresh_token")


async def test_a_token_minted_from_a_token_grants_no_more(api: Api) -> None:
    puller = (await get_token(api, f"repository:{NAME}:pull"))["token"]
    resp = await api.get(
        "/token",
        params=[("service", "angos"), ("scope", f"repository:{NAME}:pull,push")],
        headers=bearer(puller),
    )
    assert resp.status == 200
    claims = jwt.decode((await resp.json())["token"], options={"verify_signature": False})
    assert claims["access"] == [{"type": "repository", "name": NAME, "actions": ["pull"]}]


async def test_no_secret_password_or_token_reaches_a_log_or_body(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    token = (await get_token(api, f"repository:{NAME}:pull,push"))["token"]
    bodies = []
    for resp in (
        await push(api, token),
        await api.get("/token", params={"service": "angos"}, headers=basic(password="wrong")),
        await api.client.post(
            "/token", data={"grant_type": "password", "username": "alice", "password": "wrong"}
        ),
        await api.client.post(
            "/token", data={"grant_type": "refresh_token", "refresh_token": token + "x"}
        ),
        await api.get("/v2/", headers=bearer(token + "x")),
    ):
        bodies.append(await resp.text())
    everything = caplog.text + "".join(bodies)
    signature = token.rsplit(".", 1)[1]
    for secret in (SECRET, PASSWORD, "wrong", signature):
        assert secret not in everything


# --------------------------------------------------------------------------- external


ISSUER = "Acme auth server"
SERVICE = "registry.example.com"


@pytest.fixture(scope="module")
def signer() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _certificate(key: rsa.RSAPrivateKey) -> bytes:
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "token signer")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


@pytest.fixture
async def external(
    storage: Storage, signer: rsa.RSAPrivateKey, tmp_path: Path
) -> AsyncIterator[Api]:
    bundle = tmp_path / "token-signer.pem"
    bundle.write_bytes(_certificate(signer))
    toml = f"""
[auth.token.acme]
realm = "https://auth.example.com/token"
service = "{SERVICE}"
issuer = "{ISSUER}"
root_certificate_bundle = "{bundle}"
"""
    async with storage.open_api(toml) as api:
        yield api


def external_token(key: rsa.RSAPrivateKey, actions: list[str], **changes: Any) -> str:
    import time

    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "sub": "dave",
        "aud": SERVICE,
        "exp": now + 300,
        "nbf": now,
        "iat": now,
        "jti": "x",
        "access": [{"type": "repository", "name": NAME, "actions": actions}],
        **changes,
    }
    from angos_auth_token.keys import libtrust_key_id

    return jwt.encode(
        claims, key, algorithm="RS256", headers={"kid": libtrust_key_id(key.public_key())}
    )


async def test_an_external_push_token_pushes_and_a_pull_token_cannot(
    external: Api, signer: rsa.RSAPrivateKey
) -> None:
    unauthenticated = await external.get(f"/v2/{NAME}/manifests/v1")
    params = challenge_params(unauthenticated)
    assert (params["realm"], params["service"]) == ("https://auth.example.com/token", SERVICE)
    assert params["scope"] == f"repository:{NAME}:pull"

    assert (await push(external, external_token(signer, ["pull", "push"]))).status == 201
    puller = external_token(signer, ["pull"])
    assert (await external.get(f"/v2/{NAME}/manifests/v1", headers=bearer(puller))).status == 200
    refused = await push(external, puller, tag="v2")
    assert refused.status == 401
    assert challenge_params(refused)["scope"] == f"repository:{NAME}:pull,push"
    assert challenge_params(refused)["error"] == "insufficient_scope"
    # The registry serves no token endpoint of its own here.
    assert (await external.get("/token", headers=basic())).status in (401, 404)


async def test_an_external_token_for_another_service_or_key_is_refused(
    external: Api, signer: rsa.RSAPrivateKey
) -> None:
    other_service = external_token(signer, ["pull", "push"], aud="other.example.com")
    resp = await external.get(f"/v2/{NAME}/tags/list", headers=bearer(other_service))
    assert resp.status == 401
    assert "another service" in await resp.text()
    attacker = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = jwt.encode(
        jwt.decode(other_service, options={"verify_signature": False}) | {"aud": SERVICE},
        attacker,
        algorithm="RS256",
        headers={"kid": jwt.get_unverified_header(other_service)["kid"]},
    )
    assert (await external.get(f"/v2/{NAME}/tags/list", headers=bearer(forged))).status == 401

"""The webhook authorizer through the whole registry, against a real webhook on loopback
(angos_auth_webhook.testing): one more layer after the access policies, fail closed with
403 DENIED, cached, consulted by the catalog and a mount's pull check, never by the probes,
and no secret in any log line or error body."""

from __future__ import annotations

import base64
import logging
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import aiohttp
import pytest
from angos_auth_webhook.testing import WebhookServer

from angos_core.testing.api import Api, error_code, open_api
from tests.support.auth import TEST_AUTH_PLUGIN

USERS = {"admin": "admin-pw-9f3k", "reader": "reader-pw-2m8q"}
WEBHOOK_TOKEN = "webhook-token-7x1z"
POLICY = """
[global.access_policy]
default = "deny"
rules = [
  "request.action in ['healthz', 'readyz', 'metrics']",
  "identity.username == 'admin'",
  '''identity.username == 'reader' && request.action in
     ['get-api-version', 'get-manifest', 'get-blob', 'list-tags', 'list-catalog']''',
]
"""


def basic(user: str) -> dict[str, str]:
    pair = base64.b64encode(f"{user}:{USERS[user]}".encode()).decode()
    return {"Authorization": f"Basic {pair}"}


def webhook_rule(headers: Mapping[str, str]) -> int:
    """The webhook's own rule: nobody but admin reaches secret/, reader may not push."""
    namespace = headers.get("x-registry-namespace", "")
    user = headers.get("x-registry-username")
    if namespace.startswith("secret/") and user != "admin":
        return 403
    return 200


@pytest.fixture
async def webhook() -> AsyncIterator[WebhookServer]:
    server = WebhookServer(webhook_rule)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def config(webhook: WebhookServer, cache_ttl: int = 60) -> str:
    users = "".join(f'[auth.static.{u}]\npassword = "{p}"\n' for u, p in USERS.items())
    return (
        users
        + POLICY
        + f'[auth.webhook.audit]\nurl = "{webhook.url}"\ntimeout_ms = 300\n'
        + f'cache_ttl = {cache_ttl}\nbearer_token = "{WEBHOOK_TOKEN}"\n'
    )


@pytest.fixture
async def admin(tmp_path: Path, webhook: WebhookServer) -> AsyncIterator[Api]:
    async with open_api(
        tmp_path, config(webhook), [TEST_AUTH_PLUGIN], headers=basic("admin")
    ) as api:
        yield api


@pytest.fixture
async def reader(admin: Api) -> AsyncIterator[aiohttp.ClientSession]:
    session = aiohttp.ClientSession(base_url=admin.client.make_url("/"), headers=basic("reader"))
    try:
        yield session
    finally:
        await session.close()


async def test_the_webhook_is_one_more_layer_after_the_policy(
    admin: Api, reader: aiohttp.ClientSession, webhook: WebhookServer
) -> None:
    await admin.push_image("team/app", "v1")
    await admin.push_image("secret/app", "v1")
    assert (await reader.get("/v2/team/app/manifests/v1")).status == 200
    resp = await reader.get("/v2/secret/app/manifests/v1")  # the policy allows, the webhook not
    assert resp.status == 403
    assert await error_code(resp) == "DENIED"
    # The policy denies first: the webhook is not asked.
    before = webhook.count("start-upload")
    assert (await reader.post("/v2/team/app/blobs/uploads/")).status == 403
    assert webhook.count("start-upload") == before
    # The tag list is a request like any other: through the webhook.
    assert (await reader.get("/v2/secret/app/tags/list")).status == 403
    assert (await reader.get("/v2/team/app/tags/list")).status == 200
    assert webhook.count("list-tags") == 2


async def test_answers_are_cached_per_request_shape(
    admin: Api, reader: aiohttp.ClientSession, webhook: WebhookServer
) -> None:
    await admin.push_image("team/app", "v1")
    asked = webhook.count("get-manifest")
    for _ in range(10):
        assert (await reader.get("/v2/team/app/manifests/v1")).status == 200
    assert webhook.count("get-manifest") == asked + 1


async def test_the_catalog_shows_what_the_webhook_lets_the_caller_pull(
    admin: Api, reader: aiohttp.ClientSession, webhook: WebhookServer
) -> None:
    for name in ("team/app", "secret/app", "secret/db", "team/db"):
        await admin.push_image(name, "v1")
    resp = await reader.get("/v2/_catalog")
    assert resp.status == 200
    assert (await resp.json())["repositories"] == ["team/app", "team/db"]
    resp = await admin.get("/v2/_catalog")
    assert (await resp.json())["repositories"] == ["secret/app", "secret/db", "team/app", "team/db"]


async def test_a_mount_from_what_the_webhook_hides_is_a_plain_upload(tmp_path: Path) -> None:
    # Admin may do anything by policy; this webhook hides secret/ from everyone.
    ci_hook = WebhookServer(
        lambda h: 403 if h.get("x-registry-namespace", "").startswith("secret/") else 200
    )
    await ci_hook.start()
    try:
        async with open_api(
            tmp_path, config(ci_hook), [TEST_AUTH_PLUGIN], headers=basic("admin")
        ) as api:
            digest = await api.push_blob("team/src", b"shared-layer")
            resp = await api.client.post(
                f"/v2/team/dst/blobs/uploads/?mount={digest}&from=team/src"
            )
            assert resp.status == 201
            resp = await api.client.post(
                f"/v2/team/dst2/blobs/uploads/?mount={digest}&from=secret/src"
            )
            assert resp.status == 202  # not mounted: the webhook denies pull on secret/src
            # The pull checks on each mount's from were asked of the webhook.
            pulls = [r for r in ci_hook.requests if r["x-registry-action"] == ["get-manifest"]]
            assert [r["x-registry-namespace"] for r in pulls] == [["team/src"], ["secret/src"]]
    finally:
        await ci_hook.stop()


async def test_a_webhook_outage_denies_with_403_and_leaks_nothing(
    admin: Api,
    reader: aiohttp.ClientSession,
    webhook: WebhookServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await admin.push_image("team/app", "v1")
    await webhook.stop()
    caplog.set_level(logging.DEBUG)
    bodies = []
    for session_get in (reader.get, admin.get):
        resp = await session_get("/v2/team/app/manifests/v1")
        assert resp.status == 403
        bodies.append(await resp.text())
        assert await error_code(resp) == "DENIED"
    # The probes are the policy's alone.
    assert (await reader.get("/healthz")).status == 200
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("webhook 'audit'" in w and "fail closed" in w for w in warnings), warnings
    everything = caplog.text + "".join(bodies)
    for secret in (*USERS.values(), WEBHOOK_TOKEN, base64.b64encode(b"admin:").decode()[:8]):
        assert secret not in everything
    assert webhook.url not in everything


async def test_timeouts_and_bad_answers_deny(
    admin: Api, reader: aiohttp.ClientSession, webhook: WebhookServer
) -> None:
    await admin.push_image("team/app", "v1")
    for number, mode in enumerate(("slow", "garbage", "truncated", "huge")):
        webhook.mode = mode  # type: ignore[assignment]
        webhook.delay = 2.0
        resp = await reader.get(f"/v2/team/app{number}/manifests/v1")
        assert resp.status == 403, mode
        assert await error_code(resp) == "DENIED"


async def test_without_authenticators_a_denial_is_403(tmp_path: Path) -> None:
    hook = WebhookServer(lambda h: 200 if h["x-registry-action"] == "get-api-version" else 403)
    await hook.start()
    try:
        table = f'[auth.webhook.gate]\nurl = "{hook.url}"\n'
        async with open_api(tmp_path, table) as api:
            assert (await api.get("/v2/")).status == 200
            resp = await api.get("/v2/team/app/manifests/v1")
            assert resp.status == 403
            assert await error_code(resp) == "DENIED"
            assert (await api.get("/readyz")).status == 200
        assert hook.count() == 2
    finally:
        await hook.stop()

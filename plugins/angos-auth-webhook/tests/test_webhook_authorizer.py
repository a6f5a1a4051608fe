"""The webhook authorizer against a real webhook on loopback: what it sends, that every
failure denies, and that answers are cached per request shape while failures are not."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import pytest
from angos_auth_webhook.authorizer import CACHE_ENTRIES, WebhookAuthorizer
from angos_auth_webhook.config import BasicAuth, WebhookConfig
from angos_auth_webhook.testing import WebhookServer

from angos_core.identity import Certificate, Identity
from angos_core.policy.actions import PolicyRequest

ALICE = Identity("alice-id", "alice", "identity", "basic")
PULL = PolicyRequest("get-manifest", "team/app", reference="v1")
SECRET = "s3cr3t-webhook-token"


@pytest.fixture
async def server() -> AsyncIterator[WebhookServer]:
    hook = WebhookServer()
    await hook.start()
    try:
        yield hook
    finally:
        await hook.stop()


async def make(server: WebhookServer, **settings: object) -> WebhookAuthorizer:
    authorizer = WebhookAuthorizer({"audit": WebhookConfig(url=server.url, **settings)})  # type: ignore[arg-type]
    await authorizer.open()
    return authorizer


async def test_sends_angos_headers_and_no_client_credential(server: WebhookServer) -> None:
    authorizer = await make(server)
    mtls = Identity("cn-1", "ci", "tls", "mtls", certificate=Certificate(("ci", "ci2"), ("Org",)))
    push = PolicyRequest("put-manifest", "team/app", tags=("v1", "stable"))
    mount = PolicyRequest("mount-blob", "team/app", digest="sha256:" + "a" * 64, from_="base/os")
    try:
        assert (await authorizer.authorize(mtls, "10.1.2.3", push)).allowed
        assert (await authorizer.authorize(None, "10.1.2.4", mount)).allowed
    finally:
        await authorizer.aclose()
    first, second = server.requests
    assert first["x-registry-action"] == ["put-manifest"]
    assert first["x-registry-namespace"] == ["team/app"]
    assert first["x-registry-reference"] == ["v1"]
    assert first["x-registry-tags"] == ["v1,stable"]
    assert first["x-forwarded-for"] == ["10.1.2.3"]
    assert first["x-registry-username"] == ["ci"]
    assert first["x-registry-identity-id"] == ["cn-1"]
    assert first["x-registry-provider"] == ["tls"]
    assert first["x-registry-certificate-cn"] == ["ci", "ci2"]
    assert first["x-registry-certificate-o"] == ["Org"]
    assert "authorization" not in first
    assert second["x-registry-action"] == ["mount-blob"]
    assert second["x-registry-from"] == ["base/os"]
    assert second["x-registry-digest"] == ["sha256:" + "a" * 64]
    assert "x-registry-username" not in second  # anonymous


async def test_the_webhook_credential_is_sent_to_it(server: WebhookServer) -> None:
    for settings, expected in (
        ({"bearer_token": SECRET}, f"Bearer {SECRET}"),
        (
            {"basic_auth": BasicAuth("registry", SECRET)},
            "Basic cmVnaXN0cnk6czNjcjN0LXdlYmhvb2stdG9rZW4=",
        ),
    ):
        server.requests.clear()
        authorizer = await make(server, cache_ttl=0, **settings)
        try:
            await authorizer.authorize(ALICE, "127.0.0.1", PULL)
        finally:
            await authorizer.aclose()
        assert server.requests[0]["authorization"] == [expected]


async def test_2xx_allows_and_any_other_status_denies(server: WebhookServer) -> None:
    answers = {"team/app": 204, "team/no": 403, "team/gone": 404, "team/oops": 500}
    server.policy = lambda headers: answers[headers["x-registry-namespace"]]
    authorizer = await make(server)
    try:
        for namespace, status in answers.items():
            decision = await authorizer.authorize(ALICE, "", PolicyRequest("list-tags", namespace))
            assert decision.allowed is (status == 204), namespace
            assert "webhook 'audit'" in decision.reason and f"HTTP {status}" in decision.reason
    finally:
        await authorizer.aclose()


@pytest.mark.parametrize("mode", ["slow", "garbage", "truncated", "huge", "redirect", "down"])
async def test_every_failure_denies_names_the_webhook_and_is_not_cached(
    server: WebhookServer, mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    authorizer = await make(server, timeout_ms=300, bearer_token=SECRET)
    if mode == "down":
        await server.stop()
    else:
        server.mode = mode  # type: ignore[assignment]
    caplog.set_level(logging.DEBUG)
    try:
        for _ in range(2):
            decision = await authorizer.authorize(ALICE, "127.0.0.1", PULL)
            assert not decision.allowed
            assert "webhook 'audit'" in decision.reason
    finally:
        await authorizer.aclose()
    if mode == "redirect":
        # An answer (not followed): a denial, remembered like any other.
        assert "HTTP 302" in decision.reason
        assert server.count() == 1 and server.allow_hits == 0
    else:
        if mode != "down":
            assert server.count() == 2  # a failure is asked again, not remembered
        assert "fail closed" in decision.reason
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert any("webhook 'audit'" in w for w in warnings), warnings
    logged = caplog.text + decision.reason
    assert SECRET not in logged
    assert server.url not in logged and f":{server.port}" not in logged


async def test_a_control_character_is_never_sent(server: WebhookServer) -> None:
    authorizer = await make(server)
    try:
        decision = await authorizer.authorize(
            ALICE, "", PolicyRequest("list-tags", "a\r\nX-Evil: 1")
        )
    finally:
        await authorizer.aclose()
    assert not decision.allowed
    assert server.count() == 0


async def test_answers_are_cached_per_request_shape(server: WebhookServer) -> None:
    server.policy = lambda headers: 200 if headers.get("x-registry-username") == "alice" else 403
    authorizer = await make(server, cache_ttl=60)
    bob = Identity("bob-id", "bob", "identity", "basic")
    try:
        for _ in range(5):
            assert (await authorizer.authorize(ALICE, "10.0.0.1", PULL)).allowed
            assert not (await authorizer.authorize(bob, "10.0.0.1", PULL)).allowed
        assert server.count() == 2  # a denial is an answer: cached too
        other = PolicyRequest("get-manifest", "team/app", reference="v2")
        assert (await authorizer.authorize(ALICE, "10.0.0.1", other)).allowed
        assert (await authorizer.authorize(ALICE, "10.0.0.2", PULL)).allowed
        assert server.count() == 4
        # Concurrent identical questions share one request.
        new = PolicyRequest("get-blob", "team/app", digest="sha256:" + "b" * 64)
        results = await asyncio.gather(*(authorizer.authorize(ALICE, "", new) for _ in range(20)))
        assert all(r.allowed for r in results)
        assert server.count() == 5
    finally:
        await authorizer.aclose()


async def test_cache_ttl_zero_asks_every_time_and_expiry_asks_again(
    server: WebhookServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    authorizer = await make(server, cache_ttl=0)
    try:
        for _ in range(3):
            await authorizer.authorize(ALICE, "", PULL)
        assert server.count() == 3
    finally:
        await authorizer.aclose()
    server.requests.clear()
    authorizer = await make(server, cache_ttl=10)
    import angos_auth_webhook.authorizer as module

    now = [1000.0]
    monkeypatch.setattr(module, "clock", lambda: now[0])
    try:
        await authorizer.authorize(ALICE, "", PULL)
        now[0] += 9
        await authorizer.authorize(ALICE, "", PULL)
        assert server.count() == 1
        now[0] += 2
        await authorizer.authorize(ALICE, "", PULL)
        assert server.count() == 2
    finally:
        await authorizer.aclose()


async def test_the_cache_is_bounded(server: WebhookServer, monkeypatch: pytest.MonkeyPatch) -> None:
    import angos_auth_webhook.authorizer as module

    monkeypatch.setattr(module, "CACHE_ENTRIES", 3)
    authorizer = await make(server)
    try:
        for i in range(5):
            await authorizer.authorize(ALICE, "", PolicyRequest("list-tags", f"ns{i}"))
        (webhook,) = authorizer.webhooks
        assert len(webhook._cache) == 3
        await authorizer.authorize(ALICE, "", PolicyRequest("list-tags", "ns0"))  # forgotten
        assert server.count() == 6
    finally:
        await authorizer.aclose()
    assert CACHE_ENTRIES >= 1000


async def test_several_webhooks_must_all_allow(server: WebhookServer) -> None:
    second = WebhookServer(lambda headers: 403)
    await second.start()
    authorizer = WebhookAuthorizer(
        {"first": WebhookConfig(url=server.url), "second": WebhookConfig(url=second.url)}
    )
    await authorizer.open()
    try:
        decision = await authorizer.authorize(ALICE, "", PULL)
    finally:
        await authorizer.aclose()
        await second.stop()
    assert not decision.allowed
    assert "webhook 'second'" in decision.reason
    assert server.count() == 1 and second.count() == 1

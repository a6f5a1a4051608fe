"""Access policies over HTTP: each request's action decided by the policy engine.

Inside the authentication middleware (the identity is known); it decides requests when an
access policy is configured, or authenticators are (a token's ``access`` claim then
restricts what it may do: the engine applies :data:`~angos_core.policy.actions.TOKEN_SCOPES`,
and a token short of what a request needs gets 401 ``insufficient_scope``), in the request's
live settings (:mod:`angos_core.http.live`), or authorizers are. A denied anonymous request
gets 401 with the challenge when credentials could change the answer (authenticators are
configured), an authenticated one 403 ``DENIED``. A cross-repository mount from a
repository the caller may not pull is not attempted: the handler falls back to a plain
upload (202) and never reveals whether the blob exists. The catalog lists only the
repositories the caller may pull. A route that maps to no action is denied while a policy
is configured (fail closed).

The configured authorizers (:mod:`angos_core.authorization`) are one more layer: a request
the policies allow is then asked of each, and must pass all, the catalog's per-repository
pull checks and a mount's pull on ``from`` included. The probes are decided by the policies
only. Authorizers are built once at startup (a reload does not change them).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import web

from angos_core.auth.authorizers import Authorizers
from angos_core.errors import Denied, InsufficientScope, Unauthorized
from angos_core.http.context import IDENTITY
from angos_core.http.live import live
from angos_core.identity import Identity
from angos_core.policy import PolicyRequest, policy_request
from angos_core.policy.actions import GET_MANIFEST, HEALTHZ, METRICS, MOUNT_BLOB, READYZ

log = logging.getLogger("angos.policy")

#: The configured authorizers (none: an empty Authorizers).
AUTHORIZERS: web.AppKey[Authorizers] = web.AppKey("angos_authorizers", Authorizers)
#: Set on a mount request whose ``from`` the caller may pull.
_MOUNT_ALLOWED: web.RequestKey[bool] = web.RequestKey("angos_mount_allowed", bool)

#: Decided by the access policies alone: an authorizer's outage must not fail a probe.
_PROBE_ACTIONS = frozenset({HEALTHZ, READYZ, METRICS})
#: At most this many authorizer questions at once for one catalog page.
_CATALOG_CONCURRENCY = 16


def _authorizing(request: web.Request) -> bool:
    """Whether requests are decided at all: by the live settings, or by authorizers."""
    return live(request).authorizing or bool(request.app[AUTHORIZERS])


async def _authorized(
    request: web.Request, identity: Identity | None, client_ip: str, wanted: PolicyRequest
) -> bool:
    """Whether every authorizer lets ``wanted`` through (the policies already did)."""
    authorizers = request.app[AUTHORIZERS]
    if not authorizers or wanted.action in _PROBE_ACTIONS:
        return True
    verdict = await authorizers.decide(identity, client_ip, wanted)
    if not verdict.allowed:
        log.info("%s %s: %s", request.method, request.path, verdict.reason)
    return verdict.allowed


async def _may_pull(request: web.Request, repository: str) -> bool:
    identity, client_ip = request.get(IDENTITY), request.remote or ""
    if not live(request).policy.allows_pull(identity, client_ip, repository):
        return False
    return await _authorized(request, identity, client_ip, PolicyRequest(GET_MANIFEST, repository))


def mount_allowed(request: web.Request) -> bool:
    """Whether a cross-repository mount may look at its ``from`` repository: always when
    nothing is authorized, else only if the caller may pull from it."""
    if not _authorizing(request):
        return True
    return bool(request.get(_MOUNT_ALLOWED, False))


async def visible_repositories(request: web.Request, names: list[str]) -> list[str]:
    """The catalog shows only the repositories the caller may pull (all of them when
    nothing is authorized): the policies' answer, then the authorizers'."""
    if not _authorizing(request):
        return names
    limit = asyncio.Semaphore(_CATALOG_CONCURRENCY)

    async def check(name: str) -> bool:
        async with limit:
            return await _may_pull(request, name)

    shown = await asyncio.gather(*(check(name) for name in names))
    return [name for name, show in zip(names, shown, strict=True) if show]


@web.middleware
async def policy_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    if not _authorizing(request):
        response: web.StreamResponse = await handler(request)
        return response
    settings = live(request)
    engine = settings.policy
    wanted = policy_request(
        request.method, request.match_info.route.name, request.match_info, request.query
    )
    if wanted is None and engine.configured and request.match_info.http_exception is None:
        # A route no action names (a plugin's, say): no rule can have meant to allow it.
        log.warning("%s %s: the route is no policy action; denied", request.method, request.path)
        raise Denied()
    if wanted is not None:
        identity = request.get(IDENTITY)
        client_ip = request.remote or ""
        decision = engine.decide(identity, client_ip, wanted)
        allowed = decision.allowed
        if not allowed:
            log.debug("%s %s: %s", request.method, request.path, decision.reason)
        else:
            allowed = await _authorized(request, identity, client_ip, wanted)
        if decision.insufficient_scope:
            raise InsufficientScope()
        if not allowed:
            if identity is None and settings.chain is not None:
                raise Unauthorized()
            raise Denied()
        if wanted.action == MOUNT_BLOB and wanted.from_ is not None:
            request[_MOUNT_ALLOWED] = await _may_pull(request, wanted.from_)
    response = await handler(request)
    return response

"""Access policies over HTTP: each request's action decided by the policy engine.

Inside the authentication middleware (the identity is known); it decides requests when an
access policy is configured, or authenticators are (a token's ``access`` claim then
restricts what it may do), in the request's live settings (:mod:`angos_core.http.live`).
A denied anonymous request gets 401 with the challenge when credentials could change the
answer (authenticators are configured), an authenticated one 403 ``DENIED``. A
cross-repository mount from a repository the caller may not pull is not attempted: the
handler falls back to a plain upload (202) and never reveals whether the blob exists. The
catalog lists only the repositories the caller may pull. A route that maps to no action is
denied while a policy is configured (fail closed).
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from angos_core.errors import Denied, Unauthorized
from angos_core.http.context import IDENTITY
from angos_core.http.live import live
from angos_core.policy import policy_request
from angos_core.policy.actions import MOUNT_BLOB

log = logging.getLogger("angos.policy")

#: Set on a mount request whose ``from`` the caller may pull.
_MOUNT_ALLOWED: web.RequestKey[bool] = web.RequestKey("angos_mount_allowed", bool)


def mount_allowed(request: web.Request) -> bool:
    """Whether a cross-repository mount may look at its ``from`` repository: always when
    nothing is authorized, else only if the caller may pull from it."""
    if not live(request).authorizing:
        return True
    return bool(request.get(_MOUNT_ALLOWED, False))


def visible_repositories(request: web.Request, names: list[str]) -> list[str]:
    """The catalog shows only the repositories the caller may pull (all of them when
    nothing is authorized)."""
    settings = live(request)
    if not settings.authorizing:
        return names
    engine = settings.policy
    identity, client_ip = request.get(IDENTITY), request.remote or ""
    return [name for name in names if engine.allows_pull(identity, client_ip, name)]


@web.middleware
async def policy_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    settings = live(request)
    if not settings.authorizing:
        response: web.StreamResponse = await handler(request)
        return response
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
        if not decision.allowed:
            log.debug("%s %s: %s", request.method, request.path, decision.reason)
            if identity is None and settings.chain is not None:
                raise Unauthorized()
            raise Denied()
        if wanted.action == MOUNT_BLOB and wanted.from_ is not None:
            request[_MOUNT_ALLOWED] = engine.allows_pull(identity, client_ip, wanted.from_)
    response = await handler(request)
    return response

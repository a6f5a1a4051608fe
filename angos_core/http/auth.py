"""Authentication over HTTP: credentials from a request, the chain's verdict, the challenge.

With no authenticator configured (no ``[auth]``) the middleware is not installed and every
request is anonymous, as before. With one and no access policy: an authenticated identity
may do everything; an anonymous request gets 401 with the challenge everywhere (``GET
/v2/`` included, as the Docker token spec and Distribution answer it) except the probe
endpoints (``/healthz``, ``/readyz``, ``/metrics``) and the routes a plugin declared with
:func:`allow_anonymous` (the token endpoint). With an access policy, the policy decides
every route, the probes included (:mod:`angos_core.http.policy`, inside this middleware).

The identity is at ``request[IDENTITY]`` (:func:`identity_of`) for the layers below. What
an authenticated identity may do is decided below, by the policy middleware: a token whose
``access`` does not cover the request (the policy engine's one table,
:data:`~angos_core.policy.actions.TOKEN_SCOPES`) raises ``InsufficientScope``, answered here
with 401 and the challenge naming the scope it needs and ``error="insufficient_scope"``, so
the client fetches a token for it.
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
from typing import Any

from aiohttp import web
from aiohttp.web_request import BaseRequest

from angos_core.auth.chain import AuthChain
from angos_core.auth.issuer import BASIC_CHALLENGE, bearer_challenge
from angos_core.auth.scope import CATALOG, repository_access
from angos_core.auth.tokens import TOKEN_PATH
from angos_core.errors import (
    AuthenticationFailed,
    IdentityProviderUnavailable,
    Unauthorized,
)
from angos_core.http.context import IDENTITY
from angos_core.http.errors import error_response
from angos_core.http.live import live
from angos_core.http.observe import OPS_ROUTES, route_template
from angos_core.identity import Access, Certificate, Credentials, Identity

log = logging.getLogger("angos.auth")

#: Route templates an anonymous request reaches (its handler decides).
_ANONYMOUS_ROUTES: web.AppKey[set[str]] = web.AppKey("angos_anonymous_routes", set)
#: Route templates whose 401 asks for Basic credentials even when a token issuer points
#: the registry API's challenge at a realm: the token endpoint itself.
_BASIC_ROUTES: web.AppKey[set[str]] = web.AppKey("angos_basic_routes", set)

#: RFC 6750's b64token: what a Bearer token may be made of.
_B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")


class MalformedAuthorization(Unauthorized):
    """An Authorization header that cannot be parsed. The message never quotes it."""


def allow_anonymous(app: web.Application, *routes: str) -> None:
    """Let anonymous requests reach ``routes`` (route templates, e.g. ``/token``) when
    authentication is on; credentials they do present are still checked. Call it while
    building the app."""
    app.setdefault(_ANONYMOUS_ROUTES, set()).update(routes)


def challenge_with_basic(app: web.Application, *routes: str) -> None:
    """Answer a 401 on ``routes`` with the Basic challenge (the token endpoint: a client
    asking for a token must send its password, not be sent for a token)."""
    app.setdefault(_BASIC_ROUTES, set()).update(routes)


def identity_of(request: BaseRequest) -> Identity | None:
    """The authenticated caller, or None (anonymous, or authentication off)."""
    return request.get(IDENTITY)


# --------------------------------------------------------------------------- credentials


def parse_authorization(values: list[str]) -> tuple[tuple[str, str] | None, str | None]:
    """``(basic, bearer)`` from the request's Authorization headers (``[]``: neither).

    Raises :class:`MalformedAuthorization` naming what is wrong, never the credential.
    """
    if not values:
        return None, None
    if len(values) > 1:
        raise MalformedAuthorization("Authorization header sent more than once; send one")
    scheme, _, rest = values[0].strip().partition(" ")
    rest = rest.strip()
    kind = scheme.lower()
    if kind == "basic":
        try:
            decoded = base64.b64decode(rest, validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            raise MalformedAuthorization(
                "Authorization header: Basic credentials must be the base64 of "
                "<username>:<password> in UTF-8"
            ) from None
        username, colon, password = decoded.partition(":")
        if not colon:
            raise MalformedAuthorization(
                "Authorization header: Basic credentials must be <username>:<password>; "
                "no ':' found"
            )
        return (username, password), None
    if kind == "bearer":
        if not _B64TOKEN.fullmatch(rest):
            raise MalformedAuthorization(
                "Authorization header: Bearer must be followed by one token (RFC 6750)"
            )
        return None, rest
    # The scheme is not echoed: a client that sent a bare token would see it quoted.
    raise MalformedAuthorization("Authorization header: unsupported scheme; use Basic or Bearer")


def peer_certificate(request: BaseRequest) -> Certificate | None:
    """The subject of the client certificate the TLS layer verified, or None (plain HTTP,
    no certificate). The TLS listener decides whether one is asked for and verified: only a
    verified certificate is in ``getpeercert()``."""
    transport = request.transport
    if transport is None:
        return None
    peercert: Any = transport.get_extra_info("peercert")
    if not peercert:
        return None
    common_names: list[str] = []
    organizations: list[str] = []
    for rdn in peercert.get("subject", ()):
        for attribute, value in rdn:
            if attribute == "commonName":
                common_names.append(value)
            elif attribute == "organizationName":
                organizations.append(value)
    return Certificate(tuple(common_names), tuple(organizations))


def credentials_of(request: BaseRequest) -> Credentials:
    """What ``request`` presents, parsed once. Raises :class:`MalformedAuthorization`."""
    basic, bearer = parse_authorization(request.headers.getall("Authorization", []))
    return Credentials(
        client_ip=request.remote or "",
        basic=basic,
        bearer=bearer,
        certificate=peer_certificate(request),
    )


# --------------------------------------------------------------------------- scope


def request_access(request: web.Request) -> tuple[Access, ...]:
    """What the request needs, in Docker scope terms (see :mod:`angos_core.auth.scope`):
    empty for ``GET /v2/`` and routes outside ``/v2/<name>/...``."""
    name = request.match_info.get("name")
    if name is not None:
        mount_from = request.query.get("from") if "mount" in request.query else None
        return repository_access(request.method, name, mount_from)
    if route_template(request) == "/v2/_catalog":
        return (CATALOG,)
    return ()


def challenge(request: web.Request, chain: AuthChain, error: str = "") -> str:
    """The ``WWW-Authenticate`` value of a 401 for ``request``; ``error`` is RFC 6750's
    (``insufficient_scope``, ``invalid_token``)."""
    issuer = chain.issuer
    if issuer is None or route_template(request) in request.app.get(_BASIC_ROUTES, ()):
        return BASIC_CHALLENGE
    needed = request_access(request)
    if issuer.realm:
        value = issuer.challenge(needed)
    else:
        # No configured realm: the registry's own token endpoint, at the host the client
        # already talks to (a registry reachable under several names).
        origin = f"{request.scheme}://{request.host}"
        value = bearer_challenge(origin + TOKEN_PATH, issuer.service, needed)
    return f'{value},error="{error}"' if error else value


def unauthorized(
    request: web.Request, chain: AuthChain, message: str, error: str = ""
) -> web.Response:
    return error_response(
        401,
        Unauthorized.code,
        message,
        headers={"WWW-Authenticate": challenge(request, chain, error)},
    )


# --------------------------------------------------------------------------- middleware


@web.middleware
async def auth_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    """Inside the error middleware: ``TooManyRequests`` leaves through it (``Retry-After``)."""
    settings = live(request)
    chain = settings.chain
    if chain is None:
        response: web.StreamResponse = await handler(request)
        return response
    route = route_template(request)
    # With an access policy, the policy decides who reaches what, the probes included.
    by_policy = settings.policy.configured
    if route in OPS_ROUTES and not by_policy:
        response = await handler(request)
        return response
    try:
        identity = await chain.authenticate(credentials_of(request))
    except Unauthorized as exc:
        return unauthorized(request, chain, exc.message)
    except AuthenticationFailed as exc:
        return unauthorized(request, chain, exc.message)
    except IdentityProviderUnavailable as exc:
        log.warning("%s %s: %s", request.method, request.path, exc)
        return error_response(
            503,
            "UNAVAILABLE",
            f"identity provider {exc.authenticator!r} is unavailable: {exc.message}",
            {"authenticator": exc.authenticator},
            {"Retry-After": "1"},
        )
    if identity is None and not by_policy and route not in request.app.get(_ANONYMOUS_ROUTES, ()):
        return unauthorized(request, chain, Unauthorized.default_message)
    if identity is not None:
        request[IDENTITY] = identity
    try:
        response = await handler(request)
        return response
    except Unauthorized as exc:
        # A layer below (the access policy, the token endpoint) wants credentials, or a
        # token granting more.
        return unauthorized(request, chain, exc.message, exc.challenge_error)

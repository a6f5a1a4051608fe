"""The token endpoint, served when a :class:`~angos_core.auth.tokens.TokenMinter` (the
registry's token service) is configured.

- ``GET /token?service=...&scope=...`` (``scope`` may repeat and hold several scopes
  separated by spaces; ``offline_token=true`` asks for a refresh token): the Docker token
  spec. The caller is whoever the chain accepted for the request (Basic, OIDC, mTLS, a
  token). A request with no credentials gets an anonymous token for what the access policy
  lets anyone do of the requested scopes (a public repository's pull), or, where that is
  nothing, 401 with a *Basic* challenge, so the client sends its credentials.
- ``POST /token`` (``application/x-www-form-urlencoded``): the OAuth2 flavour Distribution
  specifies, which containerd and Docker 29 try first: ``grant_type=password`` (``username``
  and ``password`` go through the chain as Basic would) and ``grant_type=refresh_token``;
  ``access_type=offline`` asks for a refresh token.

What a token grants is decided by :func:`angos_core.auth.grants.token_grants`. Passwords and
tokens never reach a log line or an error body.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterable
from typing import Any

from aiohttp import web

from angos_core.auth.grants import anonymous_grants, token_grants
from angos_core.auth.issuer import BASIC_CHALLENGE
from angos_core.auth.scope import format_scopes, parse_scope
from angos_core.auth.tokens import TOKEN_PATH, IssuedToken, TokenMinter
from angos_core.errors import AuthenticationFailed, IdentityProviderUnavailable
from angos_core.http.auth import allow_anonymous, challenge_with_basic, identity_of
from angos_core.http.errors import error_response
from angos_core.http.live import live
from angos_core.identity import ANONYMOUS, Access, Credentials, Identity

#: Scopes one request may ask for: each is parsed and granted, so bound the work.
MAX_SCOPES = 64
#: A token request's form is a few short fields.
MAX_FORM_BYTES = 64 * 1024


def add_token_routes(app: web.Application) -> None:
    """Serve ``GET``/``POST`` :data:`TOKEN_PATH` with the live settings' minter (a reload may
    replace it, not remove it); anonymous requests reach the handlers, which answer them
    with the Basic challenge."""
    app.router.add_get(TOKEN_PATH, get_token, name="token")
    app.router.add_post(TOKEN_PATH, post_token, name="token-post")  # named: the policy maps it
    allow_anonymous(app, TOKEN_PATH)
    challenge_with_basic(app, TOKEN_PATH)


class _BadRequest(Exception):
    def __init__(self, error: str, message: str) -> None:
        super().__init__(message)
        self.error = error
        self.message = message


def _scopes(values: Iterable[str]) -> list[Access]:
    texts = [text for value in values for text in value.split()]
    if len(texts) > MAX_SCOPES:
        raise _BadRequest("invalid_scope", f"more than {MAX_SCOPES} scopes in one request")
    try:
        return [parse_scope(text) for text in texts]
    except ValueError as exc:
        raise _BadRequest("invalid_scope", str(exc)) from None


def _check_service(minter: TokenMinter, service: str | None) -> None:
    if service is not None and service != minter.service:
        raise _BadRequest(
            "invalid_request",
            f"this token service issues tokens for service {minter.service!r}, not {service!r}",
        )


def _rfc3339(seconds: int) -> str:
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _token_body(issued: IssuedToken, granted: tuple[Access, ...]) -> dict[str, Any]:
    body: dict[str, Any] = {
        "token": issued.token,
        "access_token": issued.token,
        "expires_in": issued.expires_in,
        "issued_at": _rfc3339(issued.issued_at),
    }
    if granted:
        body["scope"] = format_scopes(granted)
    if issued.refresh_token is not None:
        body["refresh_token"] = issued.refresh_token
    return body


def _json(
    body: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    # Tokens must not be kept by a cache between the client and the registry (RFC 6749 5.1).
    return web.Response(
        status=status,
        body=json.dumps(body).encode(),
        content_type="application/json",
        headers={"Cache-Control": "no-store", "Pragma": "no-cache", **(headers or {})},
    )


def _basic_challenge(message: str) -> web.Response:
    response = error_response(
        401, "UNAUTHORIZED", message, headers={"WWW-Authenticate": BASIC_CHALLENGE}
    )
    response.headers["Cache-Control"] = "no-store"
    return response


def _mint(
    minter: TokenMinter, identity: Identity, requested: list[Access], refresh: bool
) -> web.Response:
    granted = token_grants(identity, requested)
    issued = minter.issue(identity, granted, refresh=refresh)
    return _json(_token_body(issued, granted))


def _minter(request: web.Request) -> TokenMinter:
    minter = live(request).minter
    assert minter is not None, "the token routes are added only with a minter"
    return minter


async def get_token(request: web.Request) -> web.Response:
    minter = _minter(request)
    query = request.query
    try:
        _check_service(minter, query.get("service"))
        requested = _scopes(query.getall("scope", []))
    except _BadRequest as exc:
        return error_response(400, "UNSUPPORTED", exc.message, {"error": exc.error})
    identity = identity_of(request)
    if identity is None:
        # What the policy lets anyone do is granted anonymously (docker, not logged in,
        # pulls a public repository); for anything else the client is asked to log in.
        granted = anonymous_grants(live(request).policy, request.remote or "", requested)
        if not granted:
            return _basic_challenge("authentication required to get a token")
        return _json(_token_body(minter.issue(ANONYMOUS, granted), granted))
    refresh = query.get("offline_token", "").lower() == "true"
    return _mint(minter, identity, requested, refresh)


def _oauth_error(status: int, error: str, message: str) -> web.Response:
    headers = {"WWW-Authenticate": BASIC_CHALLENGE} if status == 401 else None
    return _json({"error": error, "error_description": message}, status, headers)


async def post_token(request: web.Request) -> web.Response:
    minter = _minter(request)
    if request.content_type != "application/x-www-form-urlencoded":
        return _oauth_error(
            400, "invalid_request", "send the token request as application/x-www-form-urlencoded"
        )
    if request.content_length is not None and request.content_length > MAX_FORM_BYTES:
        return _oauth_error(400, "invalid_request", "the token request is too large")
    form = await request.post()
    fields = {key: value for key, value in form.items() if isinstance(value, str)}
    try:
        _check_service(minter, fields.get("service"))
        requested = _scopes([fields.get("scope", "")])
    except _BadRequest as exc:
        return _oauth_error(400, exc.error, exc.message)
    grant_type = fields.get("grant_type")
    try:
        if grant_type == "password":
            identity = await _password_grant(request, fields)
        elif grant_type == "refresh_token":
            refresh_token = fields.get("refresh_token")
            if not refresh_token:
                return _oauth_error(400, "invalid_request", "refresh_token is missing")
            identity = minter.redeem(refresh_token)
        else:
            return _oauth_error(
                400,
                "unsupported_grant_type",
                "grant_type must be password or refresh_token",
            )
    except AuthenticationFailed as exc:
        return _oauth_error(401, "invalid_grant", exc.message)
    except IdentityProviderUnavailable as exc:
        # As the middleware answers it: the provider cannot decide, so no token.
        response = _oauth_error(503, "temporarily_unavailable", exc.message)
        response.headers["Retry-After"] = "1"
        return response
    if identity is None:
        return _oauth_error(401, "invalid_grant", "invalid credentials")
    refresh = fields.get("access_type") == "offline"
    return _mint(minter, identity, requested, refresh)


async def _password_grant(request: web.Request, fields: dict[str, str]) -> Identity | None:
    username, password = fields.get("username"), fields.get("password")
    if username is None or password is None:
        raise AuthenticationFailed("token_service", "username and password are required")
    chain = live(request).chain
    assert chain is not None  # the minter is one of its authenticators
    credentials = Credentials(client_ip=request.remote or "", basic=(username, password))
    return await chain.authenticate(credentials)

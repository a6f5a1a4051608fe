"""Test authenticators, registered with ``extra_plugins`` (never shipped as a plugin).

* ``static``: ``[auth.static.<username>] password = "..."`` (entries form): Basic users
  with plain-text passwords, compared in constant time; a username it does not know is not
  its kind (None), so another authenticator may have it.
* ``unreachable``: ``[auth.unreachable] fail = true``: its provider is unreachable for
  every request presenting credentials (503), or, with ``fail = false``, it recognizes
  nothing.
* ``static_token``: ``[auth.static_token] token = "..."``: one Bearer token, and a
  :class:`~angos_core.auth.issuer.TokenIssuer` (the Bearer challenge).
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from angos_core import hookimpl
from angos_core.auth.issuer import bearer_challenge
from angos_core.errors import AuthenticationFailed, IdentityProviderUnavailable
from angos_core.hookspecs import AuthenticatorSpec, BackendSpec
from angos_core.identity import (
    ORDER_BASIC,
    ORDER_REGISTRY_TOKEN,
    Access,
    Authenticator,
    Credentials,
    Identity,
)


@dataclass
class StaticUser:
    password: str


class StaticAuthenticator:
    """Basic users from a dict of username -> password."""

    order = ORDER_BASIC

    def __init__(self, users: dict[str, str], name: str = "static") -> None:
        self.name = name
        self._users = users
        self.opened = False
        self.closed = 0

    async def authenticate(self, credentials: Credentials) -> Identity | None:
        if credentials.basic is None:
            return None
        username, password = credentials.basic
        expected = self._users.get(username)
        if expected is None:
            return None
        if not hmac.compare_digest(expected.encode(), password.encode()):
            raise AuthenticationFailed(self.name, "invalid username or password")
        return Identity(id=username, username=username, provider=self.name, method="basic")

    async def open(self) -> None:
        self.opened = True

    async def health(self) -> None:
        return None

    async def aclose(self) -> None:
        self.closed += 1


@dataclass
class UnreachableConfig:
    fail: bool = True


class UnreachableAuthenticator:
    """A provider that cannot be reached (``fail``), or that recognizes nothing."""

    name = "unreachable"
    order = ORDER_REGISTRY_TOKEN

    def __init__(self, config: UnreachableConfig) -> None:
        self.fail = config.fail

    async def authenticate(self, credentials: Credentials) -> Identity | None:
        if self.fail and credentials.presented:
            raise IdentityProviderUnavailable(self.name, "issuer did not answer")
        return None

    async def open(self) -> None:
        return None

    async def health(self) -> None:
        if self.fail:
            raise IdentityProviderUnavailable(self.name, "issuer did not answer")

    async def aclose(self) -> None:
        return None


@dataclass
class StaticTokenConfig:
    token: str
    realm: str = "https://auth.example.test/token"
    service: str = "registry.example.test"


class StaticTokenAuthenticator:
    """One accepted Bearer token, and the Bearer challenge pointing at ``realm``."""

    name = "static_token"
    order = ORDER_REGISTRY_TOKEN

    def __init__(self, config: StaticTokenConfig) -> None:
        self._token = config.token
        self.realm = config.realm
        self.service = config.service

    def challenge(self, needed: Sequence[Access]) -> str:
        return bearer_challenge(self.realm, self.service, needed)

    async def authenticate(self, credentials: Credentials) -> Identity | None:
        if credentials.bearer is None:
            return None
        if not hmac.compare_digest(self._token.encode(), credentials.bearer.encode()):
            raise AuthenticationFailed(self.name, "invalid token")
        return Identity(id="ci", username="ci", provider=self.name, method="bearer")

    async def open(self) -> None:
        return None

    async def health(self) -> None:
        return None

    async def aclose(self) -> None:
        return None


def _static(entries: dict[str, StaticUser]) -> Authenticator:
    return StaticAuthenticator({name: user.password for name, user in entries.items()})


class TestAuthPlugin:
    """The plugin object to pass as ``extra_plugins``."""

    __test__ = False  # not a test class, whatever its name

    @hookimpl
    def angos_authenticators(self) -> list[BackendSpec[Any]]:
        return [
            AuthenticatorSpec(
                name="static", factory=_static, config_type=StaticUser, form="entries"
            ),
            BackendSpec(
                name="unreachable",
                factory=UnreachableAuthenticator,
                config_type=UnreachableConfig,
            ),
            BackendSpec(
                name="static_token",
                factory=StaticTokenAuthenticator,
                config_type=StaticTokenConfig,
            ),
        ]


TEST_AUTH_PLUGIN = TestAuthPlugin()

"""``[auth]`` -> the configured authenticators and the failure limit.

Each sub-table of ``[auth]`` names an installed authenticator spec (the ``angos_authenticators``
hook), except ``[auth.failure_limit]``, core's own. The authenticator kind is declared in
:mod:`angos_core.kinds` (``Entries("auth")``), whose parse selects them; the spec declares
its form (:class:`~angos_core.hookspecs.AuthenticatorSpec`):

* ``table``: ``[auth.htpasswd]`` is its settings, parsed into the spec's ``config_type``;
* ``entries``: every sub-table ``[auth.identity.alice]``, ``[auth.identity.bob]`` is one
  entry, each parsed into ``config_type``; the factory gets them all as one ``dict`` and
  builds **one** authenticator over every entry (Basic identities are one lookup over all
  users; several OIDC issuers one JWT check choosing the issuer by the token's ``iss``).

No ``[auth]`` section (or one holding only ``failure_limit``): the registry is anonymous.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from angos_core.errors import ConfigError, ConfigErrors

if TYPE_CHECKING:
    from angos_core.config import BackendChoice
    from angos_core.plugins import BackendCatalogue


@dataclass
class FailureLimitConfig:
    """``[auth.failure_limit]``: refuse a (client address, username) that failed too often.

    After ``max_failures`` failed authentications within ``window_secs`` the pair gets 429
    with ``Retry-After`` until the window ends, without its credentials being checked; other
    addresses and other usernames are not affected. ``max_tracked`` bounds the table (the
    least recently failing pairs are forgotten first).
    """

    max_failures: int = 10
    window_secs: float = 60.0
    max_tracked: int = 10000

    def __post_init__(self) -> None:
        errors = []
        if self.max_failures < 0:
            errors.append(
                ConfigError(
                    "auth.failure_limit.max_failures",
                    f"cannot be negative, got {self.max_failures}: set the failures allowed "
                    "per address and username within window_secs, e.g. 10 (0: no limit)",
                )
            )
        if not self.window_secs > 0:
            errors.append(
                ConfigError(
                    "auth.failure_limit.window_secs",
                    f"must be positive, got {self.window_secs}: set the seconds failures are "
                    "counted over, e.g. 60",
                )
            )
        if self.max_tracked < 1:
            errors.append(
                ConfigError(
                    "auth.failure_limit.max_tracked",
                    f"must be at least 1, got {self.max_tracked}: set how many (address, "
                    "username) pairs are remembered, e.g. 10000",
                )
            )
        ConfigErrors.raise_if_any(errors)


@dataclass
class AuthConfig:
    """``[auth]``: the authenticators in file order (the chain sorts them by ``order``)."""

    authenticators: tuple[BackendChoice, ...] = ()
    failure_limit: FailureLimitConfig = field(default_factory=FailureLimitConfig)

    @property
    def enabled(self) -> bool:
        """Whether any authenticator is configured: else the registry is anonymous."""
        return bool(self.authenticators)

    def describe(self) -> str:
        """One phrase for ``check-config``: ``auth identity (alice, bob), htpasswd``."""
        if not self.enabled:
            return "no auth (anonymous)"
        return "auth " + ", ".join(
            f"{c.name} ({', '.join(c.entries)})" if c.entries else c.name
            for c in self.authenticators
        )

    def summary(self) -> dict[str, Any]:
        """For the startup log: core's settings. The authenticators are listed under
        ``authenticator`` like every kind, names and entries only (``summary="names"``)."""
        return {"failure_limit": vars(self.failure_limit)}


def parse_auth(data: Any, authenticators: tuple[BackendChoice, ...]) -> AuthConfig:
    """``[auth]``'s core settings (``data``: the section, or None when absent) and the
    ``authenticators`` the config selected (the kind's ``Entries`` parse, which also reports
    a malformed section)."""
    # Imported here: angos_core.config imports this module for AngosConfig.auth.
    from angos_core.config import parse_table

    table = data.get("failure_limit") if isinstance(data, dict) else None
    if not isinstance(table, dict):
        if table is not None:
            raise ConfigError("auth.failure_limit", "expected a table [auth.failure_limit]")
        return AuthConfig(authenticators)
    return AuthConfig(authenticators, parse_table(FailureLimitConfig, table, "auth.failure_limit"))


#: The authenticator that makes a verified client certificate an identity
#: (:mod:`angos_core.auth.tls`): in the chain whenever ``[server.tls] client_ca_bundle`` is.
MTLS_AUTHENTICATOR = "tls"


def with_client_certificates(
    auth: AuthConfig, client_ca_bundle: object | None, catalogue: BackendCatalogue
) -> AuthConfig:
    """``auth`` with the ``tls`` authenticator first when client certificates are verified
    (``client_ca_bundle`` set), as in Angos, whether or not ``[auth.tls]`` names it;
    ``[auth.tls]`` without ``client_ca_bundle`` is an error (no certificate would reach it)."""
    from angos_core.config import choose_backend

    configured = any(c.name == MTLS_AUTHENTICATOR for c in auth.authenticators)
    path = f"auth.{MTLS_AUTHENTICATOR}"
    if client_ca_bundle is None:
        if configured:
            raise ConfigError(
                path,
                "client certificates are only asked for and verified with [server.tls] "
                "client_ca_bundle: set it to the PEM file of the CAs that issue client "
                f"certificates, or remove [{path}]",
            )
        return auth
    if configured:
        return auth
    kind = catalogue.kind("authenticator")
    choice = choose_backend(catalogue, kind, MTLS_AUTHENTICATOR, {}, path)
    return replace(auth, authenticators=(choice, *auth.authenticators))


def is_loopback(bind_address: str) -> bool:
    """Whether ``bind_address`` reaches this host only (``127.0.0.1``, ``::1``,
    ``localhost``); a host name or ``""`` (every address) is not."""
    if bind_address.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(bind_address.strip("[]")).is_loopback
    except ValueError:
        return False


def exposure_warning(bind_address: str, auth: AuthConfig) -> str | None:
    """The startup warning of an anonymous registry reachable from the network, or None."""
    if auth.enabled or is_loopback(bind_address):
        return None
    return (
        f"serving {bind_address or 'every address'} with no authentication: anyone who can "
        "reach the port can push, overwrite tags and delete; configure an authenticator "
        "(e.g. [auth.identity.<name>], see docs/configuration.md#auth) or bind 127.0.0.1"
    )

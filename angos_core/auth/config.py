"""``[auth]`` -> the configured authenticators and the failure limit.

Each sub-table of ``[auth]`` names an installed authenticator spec (the ``angos_authenticators``
hook), except ``[auth.failure_limit]``, core's own. The spec declares its form
(:class:`~angos_core.hookspecs.AuthenticatorSpec`):

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
from typing import Any

from angos_core.errors import ConfigError, ConfigErrors, PluginError
from angos_core.hookspecs import BackendSpec
from angos_core.identity import Authenticator
from angos_core.plugins import BackendCatalogue

#: Sub-tables of ``[auth]`` that are core settings, not authenticators.
RESERVED = ("failure_limit",)


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
class AuthenticatorChoice:
    """One configured authenticator: its spec and its settings (the parsed table, or for
    the ``entries`` form a ``dict`` of entry name to parsed table)."""

    name: str
    spec: BackendSpec[Any]
    settings: Any

    @property
    def entries(self) -> tuple[str, ...]:
        """The entry names of an ``entries``-form authenticator (empty for a table)."""
        return tuple(self.settings) if form_of(self.spec) == "entries" else ()

    def build(self) -> Authenticator:
        built: Authenticator = self.spec.factory(self.settings)
        return built


@dataclass
class AuthConfig:
    """``[auth]``: the authenticators in file order (the chain sorts them by ``order``)."""

    authenticators: tuple[AuthenticatorChoice, ...] = ()
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
        """For the startup log: names and entries only, never a setting (hashes, keys)."""
        return {
            "authenticators": {c.name: list(c.entries) for c in self.authenticators},
            "failure_limit": vars(self.failure_limit),
        }


def form_of(spec: BackendSpec[Any]) -> str:
    """``"table"`` or ``"entries"``: what an ``AuthenticatorSpec`` declares; a plain
    ``BackendSpec`` is one table."""
    form: str = getattr(spec, "form", "table")
    return form


def parse_auth(data: Any, catalogue: BackendCatalogue) -> AuthConfig:
    """The ``[auth]`` table (absent: ``{}``); every problem found is reported at once."""
    # Imported here: angos_core.config imports this module for AngosConfig.auth.
    from angos_core.config import parse_table

    if not isinstance(data, dict):
        raise ConfigError("auth", "expected a table such as [auth.identity.<name>]")
    errors: list[ConfigError] = []
    failure_limit = FailureLimitConfig()
    choices: list[AuthenticatorChoice] = []
    for name, table in data.items():
        path = f"auth.{name}"
        try:
            if not isinstance(table, dict):
                raise ConfigError(path, f"expected a table [{path}]")
            if name == "failure_limit":
                failure_limit = parse_table(FailureLimitConfig, table, path)
                continue
            choices.append(_choose(catalogue, name, table, path, parse_table))
        except ConfigError as exc:
            errors.extend(exc.errors)
    ConfigErrors.raise_if_any(errors)
    return AuthConfig(tuple(choices), failure_limit)


def _choose(
    catalogue: BackendCatalogue,
    name: str,
    table: dict[str, Any],
    path: str,
    parse_table: Any,
) -> AuthenticatorChoice:
    try:
        spec = catalogue.get("authenticator", name)
    except PluginError as exc:
        raise ConfigError(path, str(exc)) from None
    if form_of(spec) == "table":
        return AuthenticatorChoice(name, spec, parse_table(spec.config_type, table, path))
    if not table:
        raise ConfigError(path, f"no entry configured; add one or more [{path}.<name>] tables")
    errors: list[ConfigError] = []
    entries: dict[str, Any] = {}
    for entry, settings in table.items():
        entry_path = f"{path}.{entry}"
        if not isinstance(settings, dict):
            errors.append(
                ConfigError(
                    entry_path,
                    f"expected a table [{entry_path}]: each entry of {name!r} is its own "
                    f"[{path}.<name>] table",
                )
            )
            continue
        try:
            entries[entry] = parse_table(spec.config_type, settings, entry_path)
        except ConfigError as exc:
            errors.extend(exc.errors)
    ConfigErrors.raise_if_any(errors)
    return AuthenticatorChoice(name, spec, entries)


#: The authenticator that makes a verified client certificate an identity
#: (:mod:`angos_core.auth.tls`): in the chain whenever ``[server.tls] client_ca_bundle`` is.
MTLS_AUTHENTICATOR = "tls"


def with_client_certificates(
    auth: AuthConfig, client_ca_bundle: object | None, catalogue: BackendCatalogue
) -> AuthConfig:
    """``auth`` with the ``tls`` authenticator first when client certificates are verified
    (``client_ca_bundle`` set), as in Angos, whether or not ``[auth.tls]`` names it;
    ``[auth.tls]`` without ``client_ca_bundle`` is an error (no certificate would reach it)."""
    from angos_core.config import parse_table

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
    choice = _choose(catalogue, MTLS_AUTHENTICATOR, {}, path, parse_table)
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

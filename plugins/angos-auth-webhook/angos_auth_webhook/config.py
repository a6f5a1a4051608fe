"""``[auth.webhook.<name>]``: one authorization webhook per entry.

Key names follow Angos in Rust (``url``, ``timeout_ms``, ``cache_ttl``, ``bearer_token``,
``basic_auth``), so an Angos webhook table carries over. Angos's ``forward_headers`` is
refused: the webhook gets the identity the registry verified, never the client's headers
(its ``Authorization`` would hand the webhook the caller's password or token, and decisions
could no longer be cached per request shape).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from angos_core.errors import ConfigError, ConfigErrors


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass
class BasicAuth:
    """``basic_auth = { username = "...", password = "..." }``: how the registry logs in to
    the webhook (not the caller's credentials)."""

    username: str
    password: str = field(repr=False)


@dataclass
class WebhookConfig:
    """One ``[auth.webhook.<name>]`` entry."""

    #: Asked with ``GET`` for each request the access policies allowed; a 2xx answer
    #: allows, anything else denies.
    url: str
    #: The whole exchange (connect, answer, body) must finish within this, else deny.
    timeout_ms: int = 1000
    #: Seconds an answer (2xx or not) is reused for the same request shape; 0: ask every time.
    cache_ttl: int = 60
    #: Sent as ``Authorization: Bearer <token>`` to the webhook.
    bearer_token: str | None = field(default=None, repr=False)
    #: Sent as ``Authorization: Basic`` to the webhook.
    basic_auth: BasicAuth | None = field(default=None, repr=False)
    #: Angos's key, refused (see the module docstring).
    forward_headers: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        errors: list[ConfigError] = []
        parts = urlsplit(self.url)
        host = parts.hostname or ""
        if parts.scheme not in ("http", "https") or not host:
            errors.append(
                ConfigError(
                    "url",
                    "must be an absolute http(s) URL such as https://authz.example.com/authorize",
                )
            )
        elif parts.username is not None or parts.password is not None:
            # The URL is never logged, but keep secrets in the keys made for them.
            errors.append(
                ConfigError(
                    "url",
                    "cannot carry credentials (user:password@); use basic_auth or bearer_token",
                )
            )
        elif (
            parts.scheme == "http"
            and not _is_loopback(host)
            and (self.bearer_token is not None or self.basic_auth is not None)
        ):
            errors.append(
                ConfigError(
                    "url",
                    "must use https when bearer_token or basic_auth is set (http sends them in "
                    "the clear; accepted for a loopback host only)",
                )
            )
        if self.timeout_ms <= 0:
            errors.append(
                ConfigError("timeout_ms", f"must be positive, got {self.timeout_ms}: e.g. 1000")
            )
        if self.cache_ttl < 0:
            errors.append(
                ConfigError(
                    "cache_ttl",
                    f"cannot be negative, got {self.cache_ttl}: seconds, e.g. 60 (0: no cache)",
                )
            )
        if self.bearer_token is not None and self.basic_auth is not None:
            errors.append(ConfigError("basic_auth", "set bearer_token or basic_auth, not both"))
        if self.forward_headers:
            errors.append(
                ConfigError(
                    "forward_headers",
                    "is not supported: the webhook gets the verified identity "
                    "(X-Registry-Username, X-Registry-Identity-ID, ...) instead of the client's "
                    "headers; remove the key",
                )
            )
        ConfigErrors.raise_if_any(errors)

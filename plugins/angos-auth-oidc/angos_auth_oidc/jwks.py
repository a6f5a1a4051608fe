"""One issuer's signing keys: fetched, cached, refreshed, shared.

The keys are fetched at ``open`` (after OpenID discovery when no ``jwks_uri`` is set) and
written to the registry's cache with the JWKS URI and the fetch time, so the other replicas
sharing the cache start and refresh from it instead of asking the issuer again.

Three ways keys are (re)loaded, each reading the shared cache before the issuer:

- scheduled: keys older than ``jwks_refresh_interval`` are refreshed in the background while
  requests go on with the ones in hand;
- a token naming a ``kid`` the keys lack (the issuer rotated): one refresh, awaited;
- no keys at all (the issuer was unreachable): one attempt, awaited.

The last two are *unscheduled*: at most one per ``jwks_min_refresh_interval`` per process, so
tokens with made-up ``kid``s cannot turn the registry into a load on the issuer, and every
request waiting meanwhile shares the one fetch in flight. A failed fetch keeps the keys in
hand (requests go on with them); with none, requests get 503.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import ssl
import time
from collections.abc import Callable
from typing import Any

import aiohttp

from angos_auth_oidc.config import OidcConfig, check_url
from angos_auth_oidc.jwt_verify import KeySet
from angos_core.errors import ConfigError, IdentityProviderUnavailable
from angos_core.protocols import Cache

log = logging.getLogger("angos.auth.oidc")

_MAX_DOCUMENT_BYTES = 1 << 20  # a JWKS is a few KiB; refuse to buffer an endless body


class JwksSource:
    """The signing keys of one ``[auth.oidc.<entry>]``; ``name`` is ``oidc.<entry>``."""

    def __init__(
        self,
        name: str,
        config: OidcConfig,
        *,
        wall_clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.config = config
        self._wall = wall_clock
        self._mono = monotonic
        self._cache: Cache | None = None
        self._session: aiohttp.ClientSession | None = None
        self._jwks_uri: str | None = config.jwks_uri or None
        self.keys: KeySet | None = None
        #: Wall-clock time the keys in hand were fetched from the issuer (by any replica).
        self._fetched_at = 0.0
        self._last_unscheduled = -float("inf")
        self._retry_scheduled_at = -float("inf")
        self._inflight: asyncio.Task[KeySet] | None = None
        self._background: asyncio.Task[None] | None = None
        digest = hashlib.sha256(config.issuer.encode()).hexdigest()[:16]
        self.cache_key = f"auth/oidc/{name}/{digest}/jwks"

    def use_cache(self, cache: Cache) -> None:
        self._cache = cache

    # ------------------------------------------------------------------ lifecycle

    async def open(self) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.config.http_request_timeout_secs),
                connector=aiohttp.TCPConnector(ssl=self._ssl_context()),
                headers={"Accept": "application/json"},
            )
        await self._load(unscheduled=False)

    def _ssl_context(self) -> ssl.SSLContext | bool:
        if not self.config.ca_bundle:
            return True
        try:
            return ssl.create_default_context(cafile=self.config.ca_bundle)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"auth.{self.name}.ca_bundle",
                f"cannot read {self.config.ca_bundle!r} as a PEM CA bundle ({exc}); give the "
                "CA certificates the issuer's TLS certificate chains to",
            ) from exc

    async def aclose(self) -> None:
        for task in (self._inflight, self._background):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        self._inflight = self._background = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    # ------------------------------------------------------------------ keys

    async def keys_for(self, kid: str | None) -> KeySet:
        """Keys that should hold ``kid``: the ones in hand, refreshed once if they lack it.

        Raises ``IdentityProviderUnavailable`` only when there are no keys at all."""
        keys = self.keys
        if keys is None:
            fresh = await self._unscheduled(kid)
            if fresh is None:
                raise IdentityProviderUnavailable(
                    self.name,
                    "the issuer's signing keys could not be fetched yet; retry shortly",
                )
            return fresh
        self.refresh_if_due()
        if not keys.has(kid):
            log.info("%s: token names a signing key not in the JWKS; refreshing it", self.name)
            with contextlib.suppress(IdentityProviderUnavailable):
                fresh = await self._unscheduled(kid)
                if fresh is not None:
                    return fresh
        return keys

    def refresh_if_due(self) -> None:
        """Start the scheduled refresh in the background if the keys are older than
        ``jwks_refresh_interval``."""
        if self.keys is not None and (
            self._wall() - self._fetched_at >= self.config.jwks_refresh_interval
        ):
            self._refresh_in_background()

    async def ensure(self) -> None:
        """For health checks: keys in hand, else one (rate-limited) attempt to get them."""
        if self.keys is None and await self._unscheduled(None) is None:
            raise IdentityProviderUnavailable(
                self.name, "no signing keys: the issuer is unreachable"
            )

    async def _unscheduled(self, kid: str | None) -> KeySet | None:
        """Join the fetch in flight, or start one unless one started too recently; None if
        none could run. A failure is logged, and None returned."""
        if self._inflight is None:
            now = self._mono()
            if now - self._last_unscheduled < self.config.jwks_min_refresh_interval:
                return None
            self._last_unscheduled = now
            self._inflight = asyncio.create_task(self._load(unscheduled=True, kid=kid))
            self._inflight.add_done_callback(self._clear_inflight)
        try:
            return await asyncio.shield(self._inflight)
        except IdentityProviderUnavailable as exc:
            log.warning("%s: %s", self.name, exc.message)
            return None

    def _clear_inflight(self, task: asyncio.Task[KeySet]) -> None:
        if self._inflight is task:
            self._inflight = None
        if not task.cancelled():
            task.exception()  # retrieved: the awaiting requests report it

    def _refresh_in_background(self) -> None:
        if self._background is not None and not self._background.done():
            return
        if self._mono() < self._retry_scheduled_at:
            return

        async def refresh() -> None:
            try:
                await self._load(unscheduled=False)
            except IdentityProviderUnavailable as exc:
                # The keys in hand stay in use; retried after the unscheduled interval, not
                # by every request that finds the keys due.
                self._retry_scheduled_at = self._mono() + self.config.jwks_min_refresh_interval
                log.warning("%s: scheduled JWKS refresh failed: %s", self.name, exc.message)

        self._background = asyncio.create_task(refresh())

    # ------------------------------------------------------------------ loading

    async def _load(self, *, unscheduled: bool, kid: str | None = None) -> KeySet:
        """Keys from the shared cache if another replica put fresher ones there (younger than
        the refresh interval; for a refresh over keys in hand, newer than those and holding
        ``kid``), else from the issuer."""
        cached = await self._read_cache()
        if cached is not None:
            keys, fetched_at, jwks_uri = cached
            if unscheduled and self.keys is not None:
                fresh_enough = fetched_at > self._fetched_at and keys.has(kid)
            else:
                fresh_enough = self._wall() - fetched_at < self.config.jwks_refresh_interval
            if fresh_enough:
                self._adopt(keys, fetched_at, jwks_uri)
                return keys
        keys = await self._fetch()
        self._adopt(keys, self._wall(), self._jwks_uri)
        await self._write_cache()
        return keys

    def _adopt(self, keys: KeySet, fetched_at: float, jwks_uri: str | None) -> None:
        self.keys = keys
        self._fetched_at = fetched_at
        self._jwks_uri = self._jwks_uri or jwks_uri

    async def _read_cache(self) -> tuple[KeySet, float, str | None] | None:
        if self._cache is None:
            return None
        raw = await self._cache.get(self.cache_key)
        if raw is None:
            return None
        try:
            entry = json.loads(raw)
            keys = KeySet.from_document(entry["jwks"], f"{self.name} (cached JWKS)")
            jwks_uri = entry.get("jwks_uri")
            return keys, float(entry["fetched_at"]), jwks_uri if isinstance(jwks_uri, str) else None
        except (ValueError, KeyError, TypeError):
            log.warning(
                "%s: unreadable JWKS entry in the cache; fetching from the issuer", self.name
            )
            return None

    async def _write_cache(self) -> None:
        if self._cache is None or self.keys is None:
            return
        entry = {
            "jwks_uri": self._jwks_uri,
            "fetched_at": self._fetched_at,
            "jwks": self.keys.document(),
        }
        await self._cache.set(
            self.cache_key, json.dumps(entry).encode(), ttl_secs=self.config.jwks_refresh_interval
        )

    async def _fetch(self) -> KeySet:
        if self._jwks_uri is None:
            self._jwks_uri = await self._discover()
        document = await self._get_json(self._jwks_uri, "JWKS")
        try:
            keys = KeySet.from_document(document, f"{self.name} (JWKS at {self._jwks_uri})")
        except ValueError as exc:
            raise IdentityProviderUnavailable(
                self.name, f"the JWKS at {self._jwks_uri} is malformed: {exc}"
            ) from None
        log.info("%s: fetched %d signing keys from %s", self.name, len(keys.keys), self._jwks_uri)
        return keys

    async def _discover(self) -> str:
        url = self.config.issuer.rstrip("/") + "/.well-known/openid-configuration"
        document = await self._get_json(url, "OpenID discovery document")
        if not isinstance(document, dict):
            raise IdentityProviderUnavailable(self.name, f"{url} is not a JSON object")
        if document.get("issuer") != self.config.issuer:
            raise IdentityProviderUnavailable(
                self.name,
                f"{url} names the issuer {document.get('issuer')!r}, not {self.config.issuer!r}: "
                f"set auth.{self.name}.issuer to exactly what the tokens' iss claim carries",
            )
        jwks_uri = document.get("jwks_uri")
        if not isinstance(jwks_uri, str):
            raise IdentityProviderUnavailable(self.name, f"{url} has no jwks_uri")
        try:
            check_url("jwks_uri", jwks_uri)
        except ValueError as exc:
            raise IdentityProviderUnavailable(self.name, f"{url}: {exc}") from None
        return jwks_uri

    async def _get_json(self, url: str, what: str) -> Any:
        if self._session is None:
            raise IdentityProviderUnavailable(self.name, "not opened")
        try:
            async with self._session.get(url) as response:
                if response.status != 200:
                    raise IdentityProviderUnavailable(
                        self.name, f"the {what} at {url} answered HTTP {response.status}"
                    )
                body = await response.content.read(_MAX_DOCUMENT_BYTES + 1)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise IdentityProviderUnavailable(
                self.name, f"cannot fetch the {what} at {url}: {exc or type(exc).__name__}"
            ) from None
        if len(body) > _MAX_DOCUMENT_BYTES:
            raise IdentityProviderUnavailable(self.name, f"the {what} at {url} is over 1 MiB")
        try:
            return json.loads(body)
        except ValueError:
            raise IdentityProviderUnavailable(
                self.name, f"the {what} at {url} is not JSON"
            ) from None

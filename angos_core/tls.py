"""HTTPS for ``angos serve``: the server's ``SSLContext`` from ``[server.tls]``, and its reload.

:func:`build_context` reads the files and checks them one by one, so a file that cannot be
read, a malformed PEM or a key that is not the certificate's is one line naming the key and
the fix (a :class:`~angos_core.errors.ConfigError`), raised before anything is bound.

Certificates rotate without a restart: :class:`ReloadingContext` polls the files' stat every
:data:`RELOAD_POLL_SECS` and builds a new context when one changed. The listener keeps one
context for its whole life, so new connections are moved to the newest context from its
server-name callback, which OpenSSL runs for every ClientHello (with or without SNI) before
it picks the certificate and verifies the client's. A connection keeps the context it was
handshaken with: nothing in flight is dropped. A new file that does not load keeps the old
context and logs one warning (until the file changes again).

A refused handshake (a client certificate of another CA, expired, or missing when
required) is answered with its TLS alert, so the client can say why
(:func:`send_handshake_alerts`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

from angos_core.config import TlsConfig
from angos_core.errors import ConfigError

log = logging.getLogger("angos.tls")

#: Seconds between two checks of the certificate files (a ``stat`` of each: cheap).
RELOAD_POLL_SECS = 2.0
#: Oldest protocol served: TLS 1.0 and 1.1 are deprecated (RFC 8996).
MINIMUM_VERSION = ssl.TLSVersion.TLSv1_2

_CERT_KEY = "server.tls.server_certificate_bundle"
_KEY_KEY = "server.tls.server_private_key"
_CA_KEY = "server.tls.client_ca_bundle"


class _EncryptedKey(Exception):
    """The private key asks for a password (OpenSSL would prompt on the terminal)."""


def _no_password() -> bytes:
    raise _EncryptedKey


def _read(key: str, path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="ascii", errors="replace")
    except OSError as exc:
        raise ConfigError(
            key, f"cannot read {str(path)!r}: {exc.strerror or exc}; set it to {what}"
        ) from None


def _reason(exc: ssl.SSLError) -> str:
    """OpenSSL's reason, readable: ``NO_START_LINE`` -> ``no start line``."""
    if exc.reason:
        return str(exc.reason).replace("_", " ").lower()
    return re.sub(r"\s*\(_ssl\.c:\d+\)", "", str(exc.strerror or exc))


def _load_certificates(key: str, path: Path, text: str, what: str) -> ssl.SSLContext:
    """A scratch context holding the certificates of ``text``: proves the PEM parses."""
    if "-----BEGIN CERTIFICATE-----" not in text:
        raise ConfigError(
            key,
            f"{str(path)!r} holds no PEM certificate (-----BEGIN CERTIFICATE-----); set it "
            f"to {what}",
        )
    scratch = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        scratch.load_verify_locations(cadata=text)
    except ssl.SSLError as exc:
        raise ConfigError(
            key,
            f"{str(path)!r} is not a valid PEM certificate bundle ({_reason(exc)}); set it "
            f"to {what}",
        ) from None
    return scratch


def build_context(tls: TlsConfig) -> ssl.SSLContext:
    """The server context for ``tls``: TLS 1.2+, the server's chain and key, and with
    ``client_ca_bundle`` client certificates verified against it (``CERT_OPTIONAL`` or
    ``CERT_REQUIRED``). :class:`ConfigError` naming the key for any file that does not load.
    """
    cert_what = "the PEM file of the server's certificate and its intermediates, leaf first"
    key_what = "the PEM file of the private key the server certificate was issued for"
    ca_what = "the PEM file of the CA certificates that issue client certificates"
    cert_path, key_path = tls.server_certificate_bundle, tls.server_private_key
    _load_certificates(_CERT_KEY, cert_path, _read(_CERT_KEY, cert_path, cert_what), cert_what)
    key_text = _read(_KEY_KEY, key_path, key_what)
    if "PRIVATE KEY-----" not in key_text:
        raise ConfigError(
            _KEY_KEY,
            f"{str(key_path)!r} holds no PEM private key (-----BEGIN PRIVATE KEY-----); "
            f"set it to {key_what}",
        )

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = MINIMUM_VERSION
    try:
        context.load_cert_chain(cert_path, key_path, password=_no_password)
    except _EncryptedKey:
        raise ConfigError(
            _KEY_KEY,
            f"{str(key_path)!r} is encrypted and angos reads no password; decrypt it "
            f"(openssl pkey -in {key_path} -out {key_path}.plain) and point the key there",
        ) from None
    except ssl.SSLError as exc:
        if "KEY_VALUES_MISMATCH" in str(exc) or "key values mismatch" in str(exc):
            raise ConfigError(
                _KEY_KEY,
                f"{str(key_path)!r} is not the private key of the certificate in "
                f"{_CERT_KEY} ({str(cert_path)!r}); set the key it was issued for, or the "
                "certificate issued for this key",
            ) from None
        raise ConfigError(
            _KEY_KEY,
            f"{str(key_path)!r} is not a valid PEM private key ({_reason(exc)}); set "
            f"it to {key_what}",
        ) from None
    except OSError as exc:  # the file went away between the read and the load
        raise ConfigError(_KEY_KEY, f"cannot read {str(key_path)!r}: {exc.strerror}") from None

    if tls.client_ca_bundle is not None:
        ca_path = tls.client_ca_bundle
        ca_text = _read(_CA_KEY, ca_path, ca_what)
        _load_certificates(_CA_KEY, ca_path, ca_text, ca_what)
        context.load_verify_locations(cadata=ca_text)
        context.verify_mode = (
            ssl.CERT_REQUIRED if tls.client_auth == "required" else ssl.CERT_OPTIONAL
        )
    # Without client_ca_bundle the context stays CERT_NONE: no certificate is asked for,
    # and getpeercert() is empty, so none can become an identity.
    return context


def trusts_client_certificates(tls: TlsConfig | None) -> bool:
    """Whether a verified client certificate can reach the app at all."""
    return tls is not None and tls.client_ca_bundle is not None


Signature = tuple[tuple[int, int, int, int] | str, ...]


def _signature(tls: TlsConfig) -> Signature:
    """What identifies the files' current contents: inode, device, mtime and size of each
    (after symlinks: Kubernetes swaps a secret's ``..data`` link), or the error reading it."""
    paths = [tls.server_certificate_bundle, tls.server_private_key]
    if tls.client_ca_bundle is not None:
        paths.append(tls.client_ca_bundle)
    found: list[tuple[int, int, int, int] | str] = []
    for path in paths:
        try:
            st = os.stat(path)
        except OSError as exc:
            found.append(f"{path}: {exc.strerror}")
        else:
            found.append((st.st_ino, st.st_dev, st.st_mtime_ns, st.st_size))
    return tuple(found)


def send_handshake_alerts() -> None:
    """Make asyncio send the TLS alert of a failed handshake before it closes.

    asyncio's ``SSLProtocol`` (3.11+) drops the connection as soon as OpenSSL refuses a
    handshake, with the alert naming why (``unknown ca``, ``certificate expired``,
    ``certificate required``) still in its outgoing buffer: the client reads a bare EOF.
    Flushing that buffer first gives docker, skopeo and curl the reason. Idempotent; a
    Python whose ``SSLProtocol`` lacks these internals keeps its behaviour (EOF), as does
    uvloop, which has its own TLS layer.
    """
    from asyncio import sslproto

    protocol: Any = getattr(sslproto, "SSLProtocol", None)
    complete = getattr(protocol, "_on_handshake_complete", None)
    if complete is None or not hasattr(protocol, "_process_outgoing"):
        return
    if getattr(complete, "_angos_sends_alerts", False):
        return

    def on_handshake_complete(self: Any, handshake_exc: BaseException | None) -> None:
        if handshake_exc is not None:
            with contextlib.suppress(Exception):  # the transport may be gone already
                self._process_outgoing()
        complete(self, handshake_exc)

    on_handshake_complete._angos_sends_alerts = True  # type: ignore[attr-defined]
    protocol._on_handshake_complete = on_handshake_complete


class ReloadingContext:
    """The listener's context, handing each new connection the newest certificates.

    ``context`` is what the listener is given (built at once: :class:`ConfigError` if the
    files do not load); :meth:`check` reloads when the files changed; :meth:`run` checks
    every ``interval`` seconds until cancelled.
    """

    def __init__(
        self,
        tls: TlsConfig,
        *,
        interval: float = RELOAD_POLL_SECS,
        build: Callable[[TlsConfig], ssl.SSLContext] = build_context,
    ) -> None:
        self.tls = tls
        self.interval = interval
        self._build = build
        self._signature = _signature(tls)
        self.context = build(tls)
        self.current = self.context
        self.context.sni_callback = self._select
        self.reloads = 0
        send_handshake_alerts()

    def _select(
        self, ssl_object: ssl.SSLObject, server_name: str | None, _: ssl.SSLContext
    ) -> None:
        current = self.current
        if ssl_object.context is not current:
            ssl_object.context = current

    def check(self) -> bool:
        """Reload if a file changed since the last look; whether new certificates are in use."""
        signature = _signature(self.tls)
        if signature == self._signature:
            return False
        self._signature = signature
        try:
            context = self._build(self.tls)
        except ConfigError as exc:
            log.warning(
                "TLS files changed but do not load, still serving the previous certificates: %s",
                exc,
            )
            return False
        self.current = context
        self.reloads += 1
        log.info("TLS certificates reloaded from %s", self.tls.server_certificate_bundle)
        return True

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                self.check()
            except Exception:  # a reload bug must not end the watch, nor the server
                log.exception("TLS certificate reload failed")

"""The authenticator ``tls``: a verified client certificate is an identity (mTLS).

A plugin like any other (core's own entry point ``angos-auth-tls`` in the group ``angos``
registers it, as a third-party distribution's would), kept in core because it has nothing
of its own: the TLS listener that asks for and verifies client certificates is core's
(``[server.tls]``, :mod:`angos_core.tls`), and so is the parsing of the verified subject
into ``Credentials.certificate`` (:func:`angos_core.http.auth.peer_certificate`). A
separate package could be left uninstalled while ``client_ca_bundle`` is set, and verified
certificates would then silently count for nothing.

It joins the chain (first: ``ORDER_MTLS``) whenever ``[server.tls] client_ca_bundle`` is set,
as in Angos: configuring which CAs issue client certificates is what makes them identities.
``[auth.tls]`` (no keys) may be written too; it needs ``client_ca_bundle``. Without it no
client certificate is asked for, so ``Credentials.certificate`` is always None.

The identity: ``id`` and ``username`` are the subject's first common name, ``provider``
``tls``, ``method`` ``mtls``, ``certificate`` every common name and organization. A verified
certificate without a common name is refused (401): it names nobody.
"""

from __future__ import annotations

from dataclasses import dataclass

from angos_core.errors import AuthenticationFailed
from angos_core.hookspecs import AuthenticatorSpec, hookimpl
from angos_core.identity import ORDER_MTLS, Authenticator, Credentials, Identity

NAME = "tls"


@dataclass
class TlsAuthConfig:
    """``[auth.tls]``: no settings; which CAs are trusted is ``[server.tls] client_ca_bundle``."""


class TlsAuthenticator:
    name = NAME
    order = ORDER_MTLS

    async def authenticate(self, credentials: Credentials) -> Identity | None:
        certificate = credentials.certificate
        if certificate is None:
            return None
        if not certificate.common_names:
            raise AuthenticationFailed(
                NAME,
                "the client certificate's subject has no common name (CN): issue it with "
                "the CN the client authenticates as",
            )
        common_name = certificate.common_names[0]
        return Identity(
            id=common_name,
            username=common_name,
            provider=NAME,
            method="mtls",
            certificate=certificate,
        )

    async def open(self) -> None:
        """Nothing to prepare: the TLS listener verified the certificate."""

    async def health(self) -> None:
        """Always able to decide."""

    async def aclose(self) -> None:
        """Nothing to release."""


def make_authenticator(settings: TlsAuthConfig) -> Authenticator:
    return TlsAuthenticator()


@hookimpl
def angos_authenticators() -> list[AuthenticatorSpec]:
    return [
        AuthenticatorSpec(
            name=NAME,
            factory=make_authenticator,
            config_type=TlsAuthConfig,
            distribution="angos-core",
            description="client certificates verified by [server.tls] client_ca_bundle (mTLS)",
        )
    ]

"""Who is asking: the identity model and the authenticator interface.

An authenticator turns the credentials a request presents into an :class:`Identity`, or
says they are not its kind. Core runs the configured authenticators in the order of their
``order`` (mTLS, then the registry's own tokens, then OIDC and external tokens, then Basic,
as Angos in Rust does): the first that returns an identity decides.

Result rule of :meth:`Authenticator.authenticate`:

- an :class:`Identity`: the credentials are valid; later authenticators are not asked;
- ``None``: the credentials are not this authenticator's kind (no Authorization header, a
  Basic username it does not know of when another authenticator may, a JWT from another
  issuer); the next authenticator is asked, and if none answers the request is anonymous;
- raise :class:`~angos_core.errors.AuthenticationFailed`: the credentials are this
  authenticator's kind and invalid (a wrong password, an expired or badly signed token): 401
  at once, no other authenticator is asked;
- raise :class:`~angos_core.errors.IdentityProviderUnavailable`: the authenticator cannot
  decide (its issuer or file cannot be read): 503, never a pass;
- :data:`ANONYMOUS`: the credentials are this authenticator's kind, valid, and stand for
  nobody (an anonymous token from the registry's token service, minted for a caller with
  no credentials): the request is anonymous, exactly as one with no Authorization header,
  and the credentials do not count as a failure; later authenticators are not asked.

Messages of both errors reach the client: they never contain the credential itself.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

#: Chain positions (``Authenticator.order``); lower runs first.
ORDER_MTLS = 10
ORDER_REGISTRY_TOKEN = 20
ORDER_EXTERNAL_TOKEN = 30  # OIDC providers and external token issuers
ORDER_BASIC = 40


@dataclass(frozen=True, slots=True)
class Certificate:
    """The subject of a verified client certificate."""

    common_names: tuple[str, ...] = ()
    organizations: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Access:
    """One entry of a Docker token's ``access`` claim: ``actions`` on the resource
    ``type``/``name``, e.g. ``repository``, ``team/app``, ``{"pull", "push"}``. ``actions``
    may hold ``*`` (every action on that resource)."""

    type: str
    name: str
    actions: frozenset[str]


@dataclass(frozen=True, slots=True)
class Identity:
    """An authenticated caller.

    ``id`` is stable across logins (the OIDC ``sub``, the Basic username, the certificate's
    first common name); ``provider`` names the config entry that accepted it (``identity``,
    ``oidc.github``, ``htpasswd``, ``token_service``, ``tls``); ``method`` how (``basic``,
    ``bearer``, ``oidc``, ``token``, ``mtls``). ``access`` is None when the credential itself
    does not restrict what the caller may do (a password, an OIDC token), else the grants a
    token carries: only those may be exercised, whatever a policy allows.
    """

    id: str
    username: str
    provider: str
    method: str
    claims: Mapping[str, Any] = field(default_factory=dict)
    certificate: Certificate | None = None
    access: tuple[Access, ...] | None = None


#: What an authenticator returns for valid credentials that stand for nobody (result rule
#: above). Compared by identity (``is``), never used as a caller: the chain turns it into
#: an anonymous request.
ANONYMOUS = Identity(id="", username="", provider="", method="anonymous")


@dataclass(frozen=True, slots=True)
class Credentials:
    """What one request presents, parsed once by core.

    ``basic`` is the decoded ``Authorization: Basic`` pair; ``bearer`` the token of
    ``Authorization: Bearer``; ``certificate`` the subject of a client certificate the TLS
    layer verified (None on plain HTTP or without one). ``client_ip`` is for logs and the
    failure limit, never a credential.
    """

    client_ip: str
    basic: tuple[str, str] | None = None
    bearer: str | None = None
    certificate: Certificate | None = None

    @property
    def presented(self) -> bool:
        return self.basic is not None or self.bearer is not None or self.certificate is not None


@runtime_checkable
class Authenticator(Protocol):
    """One configured authenticator (an ``[auth.<kind>.<entry>]`` table, or ``[auth.<kind>]``).

    ``name`` is its config path (``oidc.github``), used in logs, metrics and error messages;
    ``order`` its chain position (the ``ORDER_*`` constants).
    """

    name: str
    order: int

    async def authenticate(self, credentials: Credentials) -> Identity | None:
        """See the module docstring for the result rule."""

    async def open(self) -> None:
        """Prepare (fetch discovery and keys, read files). May raise
        ``IdentityProviderUnavailable``: serving starts anyway and requests get 503 until
        it recovers; a configuration error raises ``ConfigError`` naming the key."""

    async def health(self) -> None:
        """Raise ``IdentityProviderUnavailable`` if requests would get 503 now."""

    async def aclose(self) -> None:
        """Release what ``open`` took. Idempotent."""


def identity_key(identity: Identity | None) -> object:
    """A hashable value equal for two identities a decision cannot tell apart (None:
    anonymous): the key the access policy's and the authorizers' decision caches use."""
    if identity is None:
        return None
    claims = json.dumps(identity.claims, sort_keys=True, default=str) if identity.claims else ""
    return (
        identity.id,
        identity.username,
        identity.provider,
        identity.method,
        identity.certificate,
        identity.access,
        claims,
    )

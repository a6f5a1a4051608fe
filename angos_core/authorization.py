"""Authorizers: an external decision, one more layer after the access policies.

An authorizer (the ``angos_authorizers`` hook, ``[auth.<name>]`` or ``[auth.<name>.<entry>]``,
such as the webhook of angos-auth-webhook: ``[auth.webhook.<entry>]``) is asked about a
request the global and repository access policies allowed, with the same inputs the policy
engine decides on: the caller's :class:`~angos_core.identity.Identity` (None: anonymous),
the client address, and the :class:`~angos_core.policy.actions.PolicyRequest` (the action and
its fields). A request must pass every configured authorizer, asked in file order; the
first that denies decides. Never the client's credentials: the identity is what the
authenticators verified.

Result rule of :meth:`Authorizer.authorize`:

- an :class:`AuthorizerDecision` with ``allowed`` true: this authorizer lets it through;
- ``allowed`` false: denied, 403 ``DENIED`` (401 with the challenge for an anonymous caller
  when authenticators are configured, as the policy's denials); ``reason`` says why, for
  the log line, never for the client;
- raising anything: denied too (fail closed). An authorizer that cannot decide (its service
  timed out, is unreachable, answered something it cannot read) returns a denial whose
  ``reason`` says so rather than raising; core logs what it raised by type only.

``reason`` is written to logs: it names the authorizer (``webhook 'audit'``) and never holds a
credential, a secret of the authorizer's own config, or a URL that may carry one.

The probes (``healthz``, ``readyz``, ``metrics``) are decided by the access policies only:
an authorizer's outage must not fail a liveness check.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from angos_core.identity import Identity
    from angos_core.policy.actions import PolicyRequest


@dataclass(frozen=True, slots=True)
class AuthorizerDecision:
    """One authorizer's answer; ``reason`` is for logs (see the module docstring)."""

    allowed: bool
    reason: str


@runtime_checkable
class Authorizer(Protocol):
    """One configured authorizer (``[auth.<name>]``, or every ``[auth.<name>.<entry>]`` at once).

    ``name`` is its config path (``webhook``), used in logs and metrics.
    """

    name: str

    async def authorize(
        self, identity: Identity | None, client_ip: str, request: PolicyRequest
    ) -> AuthorizerDecision:
        """See the module docstring for the result rule."""

    async def open(self) -> None:
        """Prepare (open an HTTP client). A ``ConfigError`` stops startup."""

    async def aclose(self) -> None:
        """Release what ``open`` took. Idempotent."""

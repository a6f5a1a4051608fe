"""``angos policy check``: ask the configuration what it would decide, and why."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from angos_core.errors import ConfigError
from angos_core.identity import Certificate, Identity
from angos_core.policy.actions import (
    ACTIONS,
    GET_MANIFEST,
    MOUNT_BLOB,
    PUT_MANIFEST,
    REPOSITORY_ACTIONS,
    PolicyRequest,
)
from angos_core.policy.engine import Decision, PolicyEngine

#: Actions whose request carries a digest (``--digest``).
_DIGEST_ACTIONS = frozenset(
    {"get-blob", "delete-blob", "complete-upload", "get-referrers", MOUNT_BLOB}
)
#: Actions whose request carries a reference (``--tag``, else ``--digest``).
_REFERENCE_ACTIONS = frozenset({GET_MANIFEST, "delete-manifest"})


def read_claims(path: str) -> dict[str, Any]:
    try:
        claims = json.loads(Path(path).read_text())
    except OSError as exc:
        raise ConfigError("--claims", f"cannot read {path!r}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise ConfigError("--claims", f"{path!r} is not JSON: {exc}") from None
    if not isinstance(claims, dict):
        raise ConfigError("--claims", f"{path!r} must hold a JSON object of claims")
    return claims


def make_identity(
    name: str | None,
    claims: dict[str, Any] | None = None,
    provider: str | None = None,
    common_names: Sequence[str] = (),
    organizations: Sequence[str] = (),
) -> Identity | None:
    """The identity to ask about: a Basic user ``name``, an OIDC identity from ``claims``
    (``provider`` is its ``[auth.oidc.<provider>]`` entry), a client certificate; None
    (anonymous) when nothing is given."""
    certificate = (
        Certificate(tuple(common_names), tuple(organizations))
        if common_names or organizations
        else None
    )
    if claims is not None:
        if not provider:
            raise ConfigError(
                "--provider", "is required with --claims: the NAME of [auth.oidc.NAME]"
            )
        subject = str(claims.get("sub", name or ""))
        return Identity(
            id=subject,
            username=name or subject,
            provider=f"oidc.{provider}",
            method="oidc",
            claims=claims,
            certificate=certificate,
        )
    if name is not None:
        return Identity(name, name, "identity", "basic", certificate=certificate)
    if certificate is not None:
        first = common_names[0] if common_names else ""
        return Identity(first, first, "tls", "mtls", certificate=certificate)
    return None


def request_for(
    action: str,
    repository: str | None,
    tag: str | None = None,
    digest: str | None = None,
    source: str | None = None,
) -> PolicyRequest:
    """The request of ``action``, with the fields a real one of that action carries."""
    if action not in ACTIONS:
        raise ConfigError("--action", f"unknown action {action!r}; actions: {', '.join(ACTIONS)}")
    if action not in REPOSITORY_ACTIONS:
        return PolicyRequest(action)
    if not repository:
        raise ConfigError("--repository", f"is required for {action}")
    if action == PUT_MANIFEST:
        if tag is None and digest is not None:
            return PolicyRequest(action, repository, digest=digest, tags=())
        return PolicyRequest(action, repository, tags=(tag,) if tag else ())
    return PolicyRequest(
        action,
        repository,
        digest=digest if action in _DIGEST_ACTIONS else None,
        reference=(tag or digest) if action in _REFERENCE_ACTIONS else None,
        from_=source if action == MOUNT_BLOB else None,
    )


def describe(decision: Decision) -> str:
    """``allow``/``deny``, then what decided: the rule's key and text, or the default."""
    verdict = "allow" if decision.allowed else "deny "
    if decision.rule is None:
        return f"{verdict}  ({decision.reason})"
    if decision.text is None:
        return f"{verdict}  default  {decision.rule}"
    # A rule written over several TOML lines is printed on one.
    return f"{verdict}  {decision.rule}  {' '.join(decision.text.split())}"


def check(
    engine: PolicyEngine, identity: Identity | None, client_ip: str, request: PolicyRequest
) -> tuple[Decision, list[str]]:
    decision = engine.decide(identity, client_ip, request)
    return decision, [describe(decision), f"reason: {decision.reason}"]


def table(
    engine: PolicyEngine,
    identity: Identity | None,
    client_ip: str,
    repository: str,
    tag: str | None = None,
    digest: str | None = None,
    source: str | None = None,
) -> list[str]:
    """One line per action on ``repository``."""
    width = max(len(action) for action in ACTIONS)
    lines = []
    for action in ACTIONS:
        request = request_for(action, repository, tag, digest, source)
        lines.append(f"{action:<{width}}  {describe(engine.decide(identity, client_ip, request))}")
    return lines

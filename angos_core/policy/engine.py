"""The access-policy engine: ``[global.access_policy]`` and ``[repository."<ns>".access_policy]``
compiled once, one decision per request.

A policy is ``default = "allow" | "deny"`` and CEL ``rules``, OR'd: under ``deny`` each rule
is an allow rule, under ``allow`` each is a deny rule. Rules are tried in order; the first
that is true decides; the first that fails to evaluate or is not a boolean denies (fail
closed); none true: the default. The global policy runs first, then the policy of the one
repository namespace covering the request's repository; a request must pass both. A token
whose ``access`` claim restricts it (:attr:`Identity.access`) may moreover do only what the
claim grants.

Decisions are pure functions of the variables (no rule can read the clock), so they are
memoised per variable set: a repeated request shape costs a dictionary lookup.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from angos_core.errors import ConfigError, ConfigErrors
from angos_core.identity import Identity, identity_key
from angos_core.oci.names import NAME_RE, namespace_covers
from angos_core.policy import cel
from angos_core.policy.actions import (
    GET_MANIFEST,
    REPOSITORY_ACTIONS,
    PolicyRequest,
    token_permits,
)
from angos_core.policy.sections import compile_sections, repository_key

if TYPE_CHECKING:
    from angos_core.config import AccessPolicyConfig, AngosConfig, RepositoryConfig

log = logging.getLogger("angos.policy")

#: Decisions remembered per engine; the oldest is forgotten first beyond this.
CACHE_SIZE = 8192


@dataclass(frozen=True, slots=True)
class Decision:
    """``rule`` is the config key of what decided (``global.access_policy.rules[2]``,
    ``repository."team".access_policy.default``), ``text`` the rule's CEL source; both None
    when no policy applies. ``reason`` says it in a sentence, for logs and ``angos policy``."""

    allowed: bool
    rule: str | None
    text: str | None
    reason: str
    #: Denied because the caller's token does not grant the action (:data:`TOKEN_SCOPES`):
    #: answered as Distribution does, 401 with the challenge naming the scope it needs
    #: (``error="insufficient_scope"``), so the client fetches a token for it.
    insufficient_scope: bool = False


covers = namespace_covers


# --------------------------------------------------------------------------- one policy


@dataclass(frozen=True, slots=True)
class Policy:
    """One ``access_policy`` table, compiled. ``key`` is its config path."""

    key: str
    default_allow: bool
    rules: tuple[cel.Program, ...]
    #: Every rule in one program (a list of their values): one evaluation per request when
    #: no rule fails; when one does, the rules are evaluated one by one to find it.
    combined: cel.Program

    @classmethod
    def compile(cls, config: AccessPolicyConfig, key: str) -> Policy:
        if not config.rules:
            raise ConfigError(
                f"{key}.rules",
                "is empty: give at least one CEL rule, or remove the access_policy table",
            )
        errors: list[ConfigError] = []
        rules: list[cel.Program] = []
        for index, source in enumerate(config.rules):
            try:
                rules.append(cel.compile_rule(source))
            except cel.CompileError as exc:
                errors.append(ConfigError(f"{key}.rules[{index}]", f"{source!r}: {exc}"))
        ConfigErrors.raise_if_any(errors)
        # Newlines end a rule's trailing // comment before the next one.
        combined = cel.compile_rule("[" + ",".join(f"\n({r}\n)" for r in config.rules) + "\n]")
        return cls(key, config.default == "allow", tuple(rules), combined)

    def _decided(self, index: int) -> Decision:
        rule = f"{self.key}.rules[{index}]"
        verb = "denied" if self.default_allow else "allowed"
        return Decision(not self.default_allow, rule, self.rules[index].source, f"{verb} by {rule}")

    def _failed(self, index: int, problem: str) -> Decision:
        rule = f"{self.key}.rules[{index}]"
        log.warning("access policy %s denies (fail closed): %s", rule, problem)
        return Decision(False, rule, self.rules[index].source, f"denied: {rule} {problem}")

    def _default(self) -> Decision:
        verb = "allowed" if self.default_allow else "denied"
        return Decision(
            self.default_allow,
            f"{self.key}.default",
            None,
            f"{verb} by {self.key}.default (no rule matched)",
        )

    def _verdict(self, index: int, value: Any) -> Decision | None:
        if type(value) is not bool:
            return self._failed(index, f"returned {type(value).__name__} {value!r}, not a boolean")
        return self._decided(index) if value else None

    def evaluate(self, prepared: Any) -> Decision:
        try:
            values = self.combined.evaluate_in(prepared)
        except cel.EvaluationError:
            return self._evaluate_each(prepared)
        if set(map(type, values)) == {bool}:  # the usual case, without a loop in Python
            return self._decided(values.index(True)) if True in values else self._default()
        for index, value in enumerate(values):
            decided = self._verdict(index, value)
            if decided is not None:
                return decided
        return self._default()

    def _evaluate_each(self, prepared: Any) -> Decision:
        for index, program in enumerate(self.rules):
            try:
                value = program.evaluate_in(prepared)
            except cel.EvaluationError as exc:
                return self._failed(index, f"failed to evaluate: {exc}")
            decided = self._verdict(index, value)
            if decided is not None:
                return decided
        return self._default()


# --------------------------------------------------------------------------- variables


def identity_variables(identity: Identity | None, client_ip: str) -> dict[str, Any]:
    """``identity.*`` as Angos names it: ``id`` and ``username`` null when anonymous,
    ``certificate`` always present (empty lists without one), ``oidc`` null unless the
    identity came from an OIDC provider (``provider_name`` is its entry's name)."""
    certificate = identity.certificate if identity is not None else None
    oidc = None
    if identity is not None and identity.method == "oidc":
        oidc = {
            "provider_name": identity.provider.removeprefix("oidc."),
            "claims": dict(identity.claims),
        }
    return {
        "id": identity.id if identity is not None else None,
        "username": identity.username if identity is not None else None,
        "client_ip": client_ip,
        "certificate": {
            "common_names": list(certificate.common_names) if certificate else [],
            "organizations": list(certificate.organizations) if certificate else [],
        },
        "oidc": oidc,
    }


# --------------------------------------------------------------------------- the engine


_NO_POLICY = Decision(True, None, None, "allowed: no access policy is configured")


class PolicyEngine:
    """The compiled policies of one configuration (built by :meth:`build` when the config is
    loaded: ``AngosConfig.policy``)."""

    def __init__(
        self,
        global_policy: Policy | None = None,
        repositories: Mapping[str, Policy] | None = None,
    ) -> None:
        self.global_policy = global_policy
        self.repositories: dict[str, Policy] = dict(repositories or {})
        self._cache: OrderedDict[tuple[object, ...], Decision] = OrderedDict()

    @classmethod
    def build(
        cls,
        global_config: AccessPolicyConfig | None,
        repositories: Mapping[str, RepositoryConfig],
    ) -> PolicyEngine:
        """Compile every rule; every problem is one :class:`ConfigError` naming its key."""
        global_policy, compiled = compile_sections(
            "access_policy", global_config, repositories, Policy.compile
        )
        return cls(global_policy, compiled)

    @classmethod
    def from_config(cls, config: AngosConfig) -> PolicyEngine:
        """The engine ``config`` was loaded with (its rules compiled then, once)."""
        return config.policy

    @property
    def configured(self) -> bool:
        """Whether any access policy is configured; without one every request is allowed
        here and the authentication layer's own rule applies."""
        return self.global_policy is not None or bool(self.repositories)

    def policy_for(self, repository: str) -> tuple[str, Policy] | None:
        """The repository policy covering ``repository`` (namespaces never overlap, so at
        most one does)."""
        for namespace, policy in self.repositories.items():
            if covers(namespace, repository):
                return namespace, policy
        return None

    def decide(self, identity: Identity | None, client_ip: str, request: PolicyRequest) -> Decision:
        """Whether ``identity`` (None: anonymous) from ``client_ip`` may do ``request``."""
        key = (identity_key(identity), client_ip, request)
        decision = self._cache.get(key)
        if decision is None:
            decision = self._decide(identity, client_ip, request)
            if len(self._cache) >= CACHE_SIZE:
                self._cache.popitem(last=False)
            self._cache[key] = decision
        return decision

    def allows_pull(self, identity: Identity | None, client_ip: str, repository: str) -> bool:
        """Whether the caller may pull from ``repository``: which repositories the catalog
        shows, and what a cross-repository mount needs on its ``from``."""
        request = PolicyRequest(GET_MANIFEST, repository)
        return self.decide(identity, client_ip, request).allowed

    def _decide(
        self, identity: Identity | None, client_ip: str, request: PolicyRequest
    ) -> Decision:
        access = identity.access if identity is not None else None
        if access is not None and not token_permits(access, request):
            return Decision(
                False,
                None,
                None,
                f"denied: the token's access claim does not grant {request.action}"
                + (f" on {request.namespace}" if request.namespace else ""),
                insufficient_scope=True,
            )
        repository = None
        if request.namespace is not None and request.action in REPOSITORY_ACTIONS:
            repository = self.policy_for(request.namespace)
        if self.global_policy is None and repository is None:
            return _NO_POLICY
        prepared = cel.activation(
            {
                "identity": identity_variables(identity, client_ip),
                "request": request.variables(),
            }
        )
        decision = _NO_POLICY
        if self.global_policy is not None:
            decision = self.global_policy.evaluate(prepared)
            if not decision.allowed:
                return decision
        if repository is not None:
            inner = repository[1].evaluate(prepared)
            if decision is _NO_POLICY or not inner.allowed:
                return inner
            # Both allowed: report a rule over a default (the rule is what granted it),
            # the repository's over the global one; the reason names both.
            chosen = inner if inner.text is not None or decision.text is None else decision
            return Decision(True, chosen.rule, chosen.text, f"{decision.reason}; {inner.reason}")
        return decision


def check_namespaces(namespaces: list[str]) -> list[ConfigError]:
    """Each ``[repository."<namespace>"]`` is a repository-name prefix, and no two overlap
    (which one's policy would apply to ``team/app`` under ``team`` and ``team/app``?)."""
    errors = [
        ConfigError(
            repository_key(namespace),
            "is not a repository name prefix: use lowercase components such as "
            '"team" or "team/app"',
        )
        for namespace in namespaces
        if not NAME_RE.fullmatch(namespace)
    ]
    for index, outer in enumerate(namespaces):
        for inner in namespaces[index + 1 :]:
            if covers(outer, inner) or covers(inner, outer):
                first, second = sorted((outer, inner), key=len)
                errors.append(
                    ConfigError(
                        repository_key(second),
                        f"overlaps {repository_key(first)} (one covers the other's "
                        "repositories); merge them or rename one",
                    )
                )
    return errors

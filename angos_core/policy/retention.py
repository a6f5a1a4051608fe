"""Retention policies: ``[global.retention_policy]`` and
``[repository."<namespace>".retention_policy]`` (Angos in Rust's keys), compiled once when
the config is loaded, applied by ``angos prune`` (:mod:`angos_core.registry.prune`).

A policy is a list of CEL keep-rules. A manifest (judged once per tag pointing at it, and
once as untagged if no kept tag does) is kept if any rule of the global policy or of the
repository's namespace policy is true. A rule that fails to evaluate or is not a boolean
keeps it (fail open: a broken rule never deletes). A repository that no policy covers is
never pruned.

Variables: ``image.tag`` (null when untagged), ``image.pushed_at`` and
``image.last_pulled_at`` (seconds since the epoch, 0 when never pulled). Functions:
``now()``, ``days(n)``, ``hours(n)``, ``minutes(n)``, ``top_pushed(n)`` and
``top_pulled(n)`` (the tag is among the repository's ``n`` most recently pushed, or pulled,
tags; an untagged manifest never is).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from angos_core.errors import ConfigError, ConfigErrors
from angos_core.oci.names import namespace_covers
from angos_core.policy import cel
from angos_core.policy.sections import compile_sections

if TYPE_CHECKING:
    from angos_core.config import RepositoryConfig, RetentionPolicyConfig

log = logging.getLogger("angos.retention")


@dataclass(frozen=True, slots=True)
class Image:
    """One manifest as the rules see it, under one of its tags or none."""

    tag: str | None
    pushed_at: int
    last_pulled_at: int = 0

    def variables(self) -> dict[str, object]:
        return {
            "tag": self.tag,
            "pushed_at": self.pushed_at,
            "last_pulled_at": self.last_pulled_at,
        }


def rank(times: Mapping[str, int], *, skip_zero: bool = False) -> dict[str, int]:
    """Tag -> its place by time, 0 for the most recent; ties go by tag name. ``skip_zero``
    leaves out tags whose time is 0 (never pulled: not among the most recently pulled)."""
    ordered = sorted(
        ((tag, when) for tag, when in times.items() if not (skip_zero and when == 0)),
        key=lambda item: (-item[1], item[0]),
    )
    return {tag: place for place, (tag, _) in enumerate(ordered)}


@dataclass(frozen=True, slots=True)
class Rankings:
    """A repository's tags in push order and in pull order (:func:`rank`)."""

    pushed: Mapping[str, int] = field(default_factory=dict)
    pulled: Mapping[str, int] = field(default_factory=dict)

    @classmethod
    def of(cls, tags: Mapping[str, Image]) -> Rankings:
        return cls(
            rank({tag: image.pushed_at for tag, image in tags.items()}),
            rank({tag: image.last_pulled_at for tag, image in tags.items()}, skip_zero=True),
        )


@dataclass(frozen=True, slots=True)
class Verdict:
    kept: bool
    #: The config key of the rule that kept it, or that failed (and so kept it).
    rule: str | None = None
    #: Why that rule failed, when it did.
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Rule:
    key: str
    program: cel.Program


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """One ``retention_policy`` table, compiled; ``key`` is its config path."""

    key: str
    rules: tuple[Rule, ...]

    @classmethod
    def compile(cls, config: RetentionPolicyConfig, key: str) -> RetentionPolicy:
        if not config.rules:
            # No rule would keep anything: the whole namespace would be pruned.
            raise ConfigError(
                f"{key}.rules",
                "is empty, which would delete every manifest: give at least one keep-rule "
                '(e.g. "image.tag != null"), or remove the retention_policy table',
            )
        errors: list[ConfigError] = []
        rules: list[Rule] = []
        for index, source in enumerate(config.rules):
            rule_key = f"{key}.rules[{index}]"
            try:
                rules.append(Rule(rule_key, cel.compile_retention_rule(source)))
            except cel.CompileError as exc:
                errors.append(ConfigError(rule_key, f"{source!r}: {exc}"))
        ConfigErrors.raise_if_any(errors)
        return cls(key, tuple(rules))


@dataclass(frozen=True, slots=True)
class RetentionRules:
    """The compiled retention policies of one configuration (``AngosConfig.retention``)."""

    global_policy: RetentionPolicy | None = None
    namespaces: Mapping[str, RetentionPolicy] = field(default_factory=dict)

    @classmethod
    def build(
        cls,
        global_config: RetentionPolicyConfig | None,
        repositories: Mapping[str, RepositoryConfig],
    ) -> RetentionRules:
        """Every rule compiled; every problem is one :class:`ConfigError` naming its key."""
        global_policy, namespaces = compile_sections(
            "retention_policy", global_config, repositories, RetentionPolicy.compile
        )
        return cls(global_policy, namespaces)

    @property
    def configured(self) -> bool:
        return self.global_policy is not None or bool(self.namespaces)

    def rules_for(self, repository: str) -> tuple[Rule, ...]:
        """The global rules, then those of the namespace covering ``repository`` (namespaces
        never overlap); empty when no policy applies (nothing is pruned there)."""
        rules = self.global_policy.rules if self.global_policy is not None else ()
        for namespace, policy in self.namespaces.items():
            if namespace_covers(namespace, repository):
                return rules + policy.rules
        return rules


def judge(rules: tuple[Rule, ...], image: Image, rankings: Rankings, now: int) -> Verdict:
    """Whether any rule keeps ``image``; a rule that fails or is not a boolean keeps it."""
    if not rules:
        return Verdict(True)
    prepared = cel.retention_activation({"image": image.variables()})
    scope = cel.RetentionScope(now, image.tag, rankings.pushed, rankings.pulled)
    with cel.retention_scope(scope):
        for rule in rules:
            try:
                value = rule.program.evaluate_in(prepared)
            except cel.EvaluationError as exc:
                return _failed(rule, f"failed to evaluate: {exc}")
            if type(value) is not bool:
                return _failed(rule, f"returned {type(value).__name__} {value!r}, not a boolean")
            if value:
                return Verdict(True, rule.key)
    return Verdict(False)


def _failed(rule: Rule, problem: str) -> Verdict:
    log.warning("retention rule %s keeps the manifest (fail open): %s", rule.key, problem)
    return Verdict(True, rule.key, problem)

"""Immutable tags: ``[global] immutable_tags`` and ``immutable_tags_exclusions``, overridable
per ``[repository."<namespace>"]`` (Angos in Rust's keys). A protected tag, once pushed, is
never moved to another manifest nor deleted; pushing the digest it names again succeeds.
Exclusions are regular expressions searched in the tag (anchor them: ``^latest$``)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from angos_core.errors import ConfigError, ConfigErrors
from angos_core.oci.names import namespace_covers

if TYPE_CHECKING:
    from angos_core.config import GlobalConfig, RepositoryConfig


@dataclass(frozen=True, slots=True)
class TagRule:
    enabled: bool = False
    exclusions: tuple[re.Pattern[str], ...] = ()

    def protects(self, tag: str) -> bool:
        return self.enabled and not any(pattern.search(tag) for pattern in self.exclusions)


def _patterns(
    sources: Sequence[str], key: str, errors: list[ConfigError]
) -> tuple[re.Pattern[str], ...]:
    compiled = []
    for index, source in enumerate(sources):
        try:
            compiled.append(re.compile(source))
        except re.error as exc:
            errors.append(
                ConfigError(f"{key}[{index}]", f"{source!r} is not a regular expression: {exc}")
            )
    return tuple(compiled)


@dataclass(frozen=True, slots=True)
class TagImmutability:
    """Which tags of which repositories are protected."""

    default: TagRule = TagRule()
    namespaces: Mapping[str, TagRule] = field(default_factory=dict)

    @classmethod
    def build(
        cls, global_: GlobalConfig, repositories: Mapping[str, RepositoryConfig]
    ) -> TagImmutability:
        """Every exclusion compiled; a bad one is a ConfigError naming its key."""
        errors: list[ConfigError] = []
        default = TagRule(
            global_.immutable_tags,
            _patterns(
                global_.immutable_tags_exclusions, "global.immutable_tags_exclusions", errors
            ),
        )
        namespaces = {}
        for namespace, repository in repositories.items():
            if repository.immutable_tags is None and repository.immutable_tags_exclusions is None:
                continue
            exclusions = default.exclusions
            if repository.immutable_tags_exclusions is not None:
                key = f'repository."{namespace}".immutable_tags_exclusions'
                exclusions = _patterns(repository.immutable_tags_exclusions, key, errors)
            enabled = (
                default.enabled if repository.immutable_tags is None else repository.immutable_tags
            )
            namespaces[namespace] = TagRule(enabled, exclusions)
        ConfigErrors.raise_if_any(errors)
        return cls(default, namespaces)

    def protects(self, repository: str, tag: str) -> bool:
        for namespace, rule in self.namespaces.items():
            if namespace_covers(namespace, repository):
                return rule.protects(tag)
        return self.default.protects(tag)

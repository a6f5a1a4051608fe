"""Compiling a policy that the configuration gives once under ``[global]`` and once per
``[repository."<namespace>"]`` (access and retention policies share the shape)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, TypeVar

from angos_core.errors import ConfigError, ConfigErrors

if TYPE_CHECKING:
    from angos_core.config import RepositoryConfig

C = TypeVar("C")
P = TypeVar("P")


def repository_key(namespace: str) -> str:
    return f'repository."{namespace}"'


def compile_sections(
    field: str,
    global_config: C | None,
    repositories: Mapping[str, RepositoryConfig],
    compile_one: Callable[[C, str], P],
) -> tuple[P | None, dict[str, P]]:
    """``[global.<field>]`` and every ``[repository."<namespace>".<field>]`` compiled with
    ``compile_one(config, key)``; every problem of every section is one
    :class:`ConfigError` naming its key, all raised together."""
    errors: list[ConfigError] = []
    global_policy = None
    if global_config is not None:
        try:
            global_policy = compile_one(global_config, f"global.{field}")
        except ConfigError as exc:
            errors.extend(exc.errors)
    compiled: dict[str, P] = {}
    for namespace, repository in repositories.items():
        section: C | None = getattr(repository, field)
        if section is None:
            continue
        try:
            compiled[namespace] = compile_one(section, f"{repository_key(namespace)}.{field}")
        except ConfigError as exc:
            errors.extend(exc.errors)
    ConfigErrors.raise_if_any(errors)
    return global_policy, compiled

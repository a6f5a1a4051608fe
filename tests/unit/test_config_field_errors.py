"""A config class's ``__post_init__`` names its own keys; ``parse_table`` says where they sit.

A plugin's config class does not know its table's path (``auth.identity.alice``), so it
raises ``ConfigError("<field>", ...)`` and the error reaches the operator as
``auth.identity.alice.<field>``. Keys that are not one of its fields are kept as given.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from angos_core.config import parse_table
from angos_core.errors import ConfigError, ConfigErrors


@dataclass
class Table:
    name: str
    size: int = 1

    def __post_init__(self) -> None:
        errors = []
        if not self.name:
            errors.append(ConfigError("name", "cannot be empty"))
        if self.size < 0:
            errors.append(ConfigError("size", "cannot be negative"))
        if self.size == 99:
            errors.append(ConfigError("elsewhere.key", "a full key stays as it is"))
        ConfigErrors.raise_if_any(errors)


def test_a_field_key_gets_the_table_path() -> None:
    with pytest.raises(ConfigError) as raised:
        parse_table(Table, {"name": ""}, "auth.thing.one")
    assert raised.value.key == "auth.thing.one.name"
    assert str(raised.value) == "auth.thing.one.name: cannot be empty"


def test_every_field_error_is_kept() -> None:
    with pytest.raises(ConfigError) as raised:
        parse_table(Table, {"name": "", "size": -1}, "t")
    assert [(e.key, e.message) for e in raised.value.errors] == [
        ("t.name", "cannot be empty"),
        ("t.size", "cannot be negative"),
    ]


def test_other_keys_are_left_alone() -> None:
    with pytest.raises(ConfigError) as raised:
        parse_table(Table, {"name": "x", "size": 99}, "t")
    assert raised.value.key == "elsewhere.key"

"""``[global.access_policy]`` and ``[repository."<namespace>"]``: what the loader refuses, each
problem one error naming its key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from angos_core.cli import main
from angos_core.config import AccessPolicyConfig, RepositoryConfig, parse_config
from angos_core.errors import ConfigError
from angos_core.plugins import load_catalogue

BASE: dict[str, Any] = {"blob_store": {"fs": {"root_dir": "/nonexistent/angos-policy-test"}}}


def errors_of(extra: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(ConfigError) as caught:
        parse_config({**BASE, **extra}, load_catalogue())
    return {error.key: error.message for error in caught.value.errors}


def load(extra: dict[str, Any]) -> Any:
    return parse_config({**BASE, **extra}, load_catalogue())


def test_policies_parse_into_typed_tables() -> None:
    config = load(
        {
            "global": {"access_policy": {"default": "allow", "rules": ["false"]}},
            "repository": {
                "team": {"access_policy": {"rules": ["identity.username == 'a'"]}},
                "teams": {},
            },
        }
    )
    assert config.global_.access_policy == AccessPolicyConfig(rules=["false"], default="allow")
    assert config.repositories == {
        "team": RepositoryConfig(AccessPolicyConfig(rules=["identity.username == 'a'"])),
        "teams": RepositoryConfig(),
    }
    # Angos's default: deny unless a rule allows.
    assert config.repositories["team"].access_policy.default == "deny"
    assert config.policy.configured
    assert set(config.policy.repositories) == {"team"}


def test_no_policy_section_is_no_policy() -> None:
    config = load({})
    assert config.repositories == {}
    assert not config.policy.configured


def test_empty_rules_are_refused_naming_the_key() -> None:
    errors = errors_of(
        {
            "global": {"access_policy": {"default": "deny", "rules": []}},
            "repository": {"team": {"access_policy": {"rules": []}}},
        }
    )
    assert set(errors) == {
        "global.access_policy.rules",
        'repository."team".access_policy.rules',
    }
    assert "at least one" in errors["global.access_policy.rules"]


def test_missing_rules_key() -> None:
    errors = errors_of({"global": {"access_policy": {"default": "deny"}}})
    assert errors == {"global.access_policy.rules": "required key is missing"}


def test_an_uncompilable_rule_names_its_index_and_the_cel_error() -> None:
    rules = ["true", "identity.username == 'a'", "false", "identity.username =="]
    errors = errors_of({"global": {"access_policy": {"rules": rules}}})
    assert list(errors) == ["global.access_policy.rules[3]"]
    message = errors["global.access_policy.rules[3]"]
    assert "identity.username ==" in message
    assert "Syntax error" in message


def test_undeclared_variables_and_functions_are_load_errors() -> None:
    rules = ["identiy.username == 'a'", "lookup(identity.id)", "1 + 'a'"]
    errors = errors_of({"repository": {"team/app": {"access_policy": {"rules": rules}}}})
    key = 'repository."team/app".access_policy.rules'
    assert set(errors) == {f"{key}[0]", f"{key}[1]", f"{key}[2]"}
    assert "undeclared reference to 'identiy" in errors[f"{key}[0]"]
    assert "undeclared reference to 'lookup'" in errors[f"{key}[1]"]
    assert "no matching overload" in errors[f"{key}[2]"]


def test_overlapping_namespaces_are_refused() -> None:
    errors = errors_of(
        {"repository": {"team": {}, "team/app": {}, "teams": {}, "other/x": {}, "other/x/y": {}}}
    )
    assert set(errors) == {'repository."team/app"', 'repository."other/x/y"'}
    assert 'overlaps repository."team"' in errors['repository."team/app"']


def test_a_namespace_must_be_a_repository_name_prefix() -> None:
    errors = errors_of({"repository": {"Team": {}, "a//b": {}, "": {}}})
    assert set(errors) == {'repository."Team"', 'repository."a//b"', 'repository.""'}


def test_unknown_keys_are_errors_naming_the_key() -> None:
    errors = errors_of(
        {
            "global": {"access_policy": {"rules": ["true"], "default_allow": True}},
            "repository": {
                "team": {"acces_policy": {}, "access_policy": {"rules": ["true"], "x": 1}}
            },
        }
    )
    assert set(errors) == {
        "global.access_policy.default_allow",
        'repository."team".acces_policy',
        'repository."team".access_policy.x',
    }
    assert "known keys here: access_policy" in errors['repository."team".acces_policy']


def test_wrong_types_are_errors() -> None:
    errors = errors_of(
        {
            "global": {"access_policy": {"default": "permit", "rules": ["true", 3]}},
            "repository": {"team": "x"},
        }
    )
    assert set(errors) == {
        "global.access_policy.default",
        "global.access_policy.rules[1]",
        'repository."team"',
    }
    assert "'allow' or 'deny'" in errors["global.access_policy.default"]


def test_check_config_prints_each_policy_error_on_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "config.toml"
    path.write_text(
        f"""
[blob_store.fs]
root_dir = "{tmp_path}"

[global.access_policy]
default = "deny"
rules = ["true", "request.action =="]

[repository."team".access_policy]
rules = []

[repository."team/app"]
"""
    )
    assert main(["check-config", "-c", str(path)]) == 1
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 3, lines
    assert any("global.access_policy.rules[1]" in line for line in lines)
    assert any('repository."team".access_policy.rules' in line for line in lines)
    assert any('repository."team/app"' in line and "overlaps" in line for line in lines)

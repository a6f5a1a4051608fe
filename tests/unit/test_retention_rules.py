"""Retention keep-rules (angos_core.policy.retention) on a fixed clock: the variables and
functions as Angos names them, global and repository policies OR'd, fail open."""

from __future__ import annotations

import logging

import pytest

from angos_core.errors import ConfigError
from angos_core.http.app import config_from_toml
from angos_core.policy.retention import Image, Rankings, RetentionRules, judge, rank

NOW = 1_800_000_000
DAY = 86400


def rules(toml: str) -> RetentionRules:
    return config_from_toml(toml + '\n[blob_store.fs]\nroot_dir = "/nonexistent"\n').retention


def keeps(toml: str, image: Image, tags: dict[str, Image] | None = None, repo: str = "r") -> bool:
    compiled = rules(toml).rules_for(repo)
    return judge(compiled, image, Rankings.of(tags or {}), NOW).kept


def policy(*sources: str, table: str = "global.retention_policy") -> str:
    quoted = ", ".join(repr(s) for s in sources)
    return f"[{table}]\nrules = [{quoted}]\n"


@pytest.mark.parametrize(
    ("rule", "image", "kept"),
    [
        ("image.tag == 'latest'", Image("latest", 0), True),
        ("image.tag == 'latest'", Image("v1", 0), False),
        ("image.tag != null", Image(None, NOW), False),
        ("image.tag != null", Image("x", 0), True),
        ("image.pushed_at > now() - days(30)", Image(None, NOW - 29 * DAY), True),
        ("image.pushed_at > now() - days(30)", Image(None, NOW - 31 * DAY), False),
        ("image.last_pulled_at > now() - hours(2)", Image("a", 0, NOW - 3600), True),
        ("image.last_pulled_at > now() - hours(2)", Image("a", 0, NOW - 3 * 3600), False),
        ("image.last_pulled_at > now() - minutes(5)", Image("a", 0, 0), False),
        ("image.tag != null && image.tag.matches('^v[0-9]+$')", Image("v12", 0), True),
        ("image.tag != null && image.tag.matches('^v[0-9]+$')", Image("v1-rc", 0), False),
        ("now() == 1800000000 && days(2) == 172800", Image(None, 0), True),
    ],
)
def test_variables_and_time_functions(rule: str, image: Image, kept: bool) -> None:
    assert keeps(policy(rule), image) is kept


def test_top_pushed_and_top_pulled_rank_the_repository_tags() -> None:
    tags = {
        "a": Image("a", NOW - 3 * DAY, NOW - DAY),
        "b": Image("b", NOW - 2 * DAY, 0),
        "c": Image("c", NOW - 1 * DAY, NOW - 5 * DAY),
        "d": Image("d", NOW - 1 * DAY, 0),
    }
    pushed = policy("top_pushed(2)")
    # c and d tie on time: the name breaks it.
    assert [t for t, image in tags.items() if keeps(pushed, image, tags)] == ["c", "d"]
    pulled = policy("top_pulled(1)")
    assert [t for t, image in tags.items() if keeps(pulled, image, tags)] == ["a"]
    # Never pulled is not among the most recently pulled, however many are asked for.
    everything = policy("top_pulled(10)")
    assert [t for t, image in tags.items() if keeps(everything, image, tags)] == ["a", "c"]
    # An untagged manifest is never among the top tags.
    assert not keeps(policy("top_pushed(100)"), Image(None, NOW), tags)


def test_rank_orders_by_time_then_name() -> None:
    assert rank({"x": 5, "a": 5, "m": 9, "z": 0}, skip_zero=True) == {"m": 0, "a": 1, "x": 2}


def test_global_and_repository_rules_are_ored_and_namespaced() -> None:
    toml = policy("image.tag == 'latest'") + policy(
        "image.pushed_at > now() - days(365)", table='repository."prod".retention_policy'
    )
    year_old = Image("v1", NOW - 200 * DAY)
    assert keeps(toml, year_old, repo="prod/app")
    assert not keeps(toml, year_old, repo="dev/app")
    assert keeps(toml, Image("latest", 0), repo="dev/app")
    assert keeps(toml, Image("latest", 0), repo="prod/app")
    compiled = rules(toml)
    assert [r.key for r in compiled.rules_for("prod")] == [
        "global.retention_policy.rules[0]",
        'repository."prod".retention_policy.rules[0]',
    ]


def test_no_policy_keeps_everything() -> None:
    only_repo = policy("image.tag == 'x'", table='repository."team".retention_policy')
    compiled = rules(only_repo)
    assert compiled.rules_for("other") == ()
    assert judge((), Image(None, 0), Rankings(), NOW).kept


def test_a_failing_or_non_boolean_rule_keeps_and_says_which(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # image.tag is null: size() on it fails at evaluation; a string is not a boolean.
    compiled = rules(policy("image.tag.size() > 3", "image.pushed_at > now()"))
    with caplog.at_level(logging.WARNING, "angos.retention"):
        verdict = judge(compiled.rules_for("r"), Image(None, 0), Rankings(), NOW)
    assert verdict.kept and verdict.rule == "global.retention_policy.rules[0]"
    assert verdict.error is not None and "failed to evaluate" in verdict.error
    assert "fail open" in caplog.text
    not_bool = judge(rules(policy("image.tag")).rules_for("r"), Image("v", 0), Rankings(), NOW)
    assert not_bool.kept and not_bool.error is not None and "not a boolean" in not_bool.error


@pytest.mark.parametrize(
    ("toml", "key", "words"),
    [
        (policy("nope(1)"), "global.retention_policy.rules[0]", "undeclared reference"),
        (
            policy("image.tag == 'a'", "top_pushed('x')", table='repository."t".retention_policy'),
            'repository."t".retention_policy.rules[1]',
            "no matching overload",
        ),
        (policy("identity.username == 'a'"), "global.retention_policy.rules[0]", "identity"),
        ("[global.retention_policy]\nrules = []\n", "global.retention_policy.rules", "every"),
    ],
)
def test_bad_rules_are_config_errors_naming_the_key(toml: str, key: str, words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        rules(toml)
    assert [e.key for e in caught.value.errors] == [key]
    assert words in str(caught.value.errors[0])

"""The decision: rule modes, fail closed, the variables as Angos names them, the layers."""

from __future__ import annotations

import logging

import pytest

from angos_core.config import AccessPolicyConfig, RepositoryConfig
from angos_core.identity import Access, Certificate, Identity
from angos_core.policy import PolicyEngine, PolicyRequest

ALICE = Identity("alice", "alice", "identity", "basic")
ANONYMOUS = None
IP = "192.0.2.10"


def engine(
    rules: list[str] | None = None,
    default: str = "deny",
    repositories: dict[str, tuple[str, list[str]]] | None = None,
) -> PolicyEngine:
    global_policy = AccessPolicyConfig(rules, default) if rules is not None else None  # type: ignore[arg-type]
    repos = {
        namespace: RepositoryConfig(AccessPolicyConfig(repo_rules, repo_default))  # type: ignore[arg-type]
        for namespace, (repo_default, repo_rules) in (repositories or {}).items()
    }
    return PolicyEngine.build(global_policy, repos)


def pull(namespace: str = "team/app") -> PolicyRequest:
    return PolicyRequest("get-manifest", namespace, reference="v1")


def push(namespace: str = "team/app", *tags: str) -> PolicyRequest:
    return PolicyRequest("put-manifest", namespace, tags=tags)


def test_under_deny_rules_allow_and_under_allow_rules_deny() -> None:
    allow_rules = engine(["identity.username == 'alice'"], "deny")
    assert allow_rules.decide(ALICE, IP, pull()).allowed
    denied = allow_rules.decide(Identity("bob", "bob", "identity", "basic"), IP, pull())
    assert not denied.allowed
    assert denied.rule == "global.access_policy.default"

    deny_rules = engine(["identity.username == 'alice'"], "allow")
    decision = deny_rules.decide(ALICE, IP, pull())
    assert not decision.allowed
    assert decision.rule == "global.access_policy.rules[0]"
    assert decision.text == "identity.username == 'alice'"
    assert deny_rules.decide(Identity("bob", "bob", "identity", "basic"), IP, pull()).allowed


def test_rules_are_ored_and_the_first_true_decides() -> None:
    policy = engine(["false", "identity.username == 'alice'", "true"])
    decision = policy.decide(ALICE, IP, pull())
    assert decision.allowed
    assert decision.rule == "global.access_policy.rules[1]"


@pytest.mark.parametrize("default", ["allow", "deny"])
@pytest.mark.parametrize(
    "rule",
    [
        "request.from == 'x'",  # absent field: no such key
        "identity.oidc.claims['repository'] == 'a/b'",  # not an OIDC identity: null
        "request.action.matches('[')",  # a bad regular expression
        "1 / 0 == 1",
    ],
)
def test_an_evaluation_error_denies_in_both_modes(
    rule: str, default: str, caplog: pytest.LogCaptureFixture
) -> None:
    policy = engine([rule], default)
    with caplog.at_level(logging.WARNING, logger="angos.policy"):
        decision = policy.decide(ALICE, IP, pull())
    assert not decision.allowed
    assert decision.rule == "global.access_policy.rules[0]"
    assert "failed to evaluate" in decision.reason
    assert "fail closed" in caplog.text


@pytest.mark.parametrize("default", ["allow", "deny"])
@pytest.mark.parametrize("rule", ["'yes'", "1", "identity.username", "[true]", "null"])
def test_a_non_boolean_result_denies_in_both_modes(rule: str, default: str) -> None:
    decision = engine([rule], default).decide(ALICE, IP, pull())
    assert not decision.allowed
    assert "not a boolean" in decision.reason


def test_an_error_after_the_deciding_rule_does_not_matter_but_before_it_denies() -> None:
    assert engine(["true", "1 / 0 == 1"]).decide(ALICE, IP, pull()).allowed
    decision = engine(["1 / 0 == 1", "true"]).decide(ALICE, IP, pull())
    assert not decision.allowed
    assert decision.rule == "global.access_policy.rules[0]"


def test_optional_request_fields_are_absent_so_has_works() -> None:
    policy = engine(["!has(request.from)", "has(request.from) && request.from == 'base/img'"])
    assert policy.decide(ALICE, IP, PolicyRequest("start-upload", "team/app")).allowed
    mount = PolicyRequest("mount-blob", "team/app", digest="sha256:" + "a" * 64, from_="base/img")
    decision = policy.decide(ALICE, IP, mount)
    assert decision.allowed
    assert decision.rule == "global.access_policy.rules[1]"
    other = PolicyRequest("mount-blob", "team/app", digest="sha256:" + "a" * 64, from_="secret")
    assert not policy.decide(ALICE, IP, other).allowed
    # Absent, not null: a null comparison is an error (fail closed), as in Angos.
    assert not engine(["request.from == null"]).decide(ALICE, IP, pull()).allowed


def test_tags_are_set_for_put_manifest_only() -> None:
    policy = engine(["has(request.tags) && request.tags.all(t, t.startsWith('v'))"])
    assert policy.decide(ALICE, IP, push("team/app", "v1", "v1.2")).allowed
    assert not policy.decide(ALICE, IP, push("team/app", "v1", "latest")).allowed
    assert not policy.decide(ALICE, IP, pull()).allowed
    assert engine(["size(request.tags) == 0"]).decide(ALICE, IP, push("team/app")).allowed


def test_anonymous_identity_has_null_id_and_username() -> None:
    policy = engine(["identity.username == 'admin'", "identity.id == 'admin'"])
    decision = policy.decide(ANONYMOUS, IP, pull())
    assert not decision.allowed
    assert decision.rule == "global.access_policy.default"  # false, not an error
    authenticated = engine(["identity.username != null"])
    assert not authenticated.decide(ANONYMOUS, IP, pull()).allowed
    assert authenticated.decide(ALICE, IP, pull()).allowed
    assert (
        engine(["identity.id == null && identity.oidc == null"])
        .decide(ANONYMOUS, IP, pull())
        .allowed
    )


def test_client_ip_certificate_and_list_contains() -> None:
    cert = Identity(
        "ci-1", "ci-1", "tls", "mtls", certificate=Certificate(("ci-1",), ("Platform", "Ops"))
    )
    policy = engine(
        [
            "identity.certificate.organizations.contains('Platform')",  # Angos's spelling
            "'deployer' in identity.certificate.common_names",
            "identity.client_ip.startsWith('10.')",
        ]
    )
    assert policy.decide(cert, IP, pull()).rule == "global.access_policy.rules[0]"
    # No certificate: empty lists, not null, so the rules are simply false.
    assert policy.decide(ALICE, IP, pull()).rule == "global.access_policy.default"
    assert policy.decide(ALICE, "10.1.2.3", pull()).rule == "global.access_policy.rules[2]"


def test_oidc_variables() -> None:
    ci = Identity(
        "repo:acme/app:ref:refs/heads/main",
        "repo:acme/app:ref:refs/heads/main",
        "oidc.github-actions",
        "oidc",
        claims={"repository": "acme/app", "ref": "refs/heads/main", "run_number": 7},
    )
    policy = engine(
        [
            "identity.oidc != null && identity.oidc.provider_name == 'github-actions' && "
            "identity.oidc.claims['repository'] == 'acme/app' && "
            "identity.oidc.claims['run_number'] > 5"
        ]
    )
    assert policy.decide(ci, IP, push()).allowed
    assert not policy.decide(ALICE, IP, push()).allowed  # identity.oidc is null: false
    other = Identity(ci.id, ci.username, ci.provider, "oidc", claims={"repository": "acme/x"})
    assert not policy.decide(other, IP, push()).allowed


def test_global_then_repository_and_both_must_pass() -> None:
    policy = engine(
        ["identity.username != null"],
        "deny",
        {"team": ("deny", ["identity.username == 'alice'"]), "public": ("allow", ["false"])},
    )
    bob = Identity("bob", "bob", "identity", "basic")
    assert policy.decide(ALICE, IP, pull("team/app")).allowed
    decision = policy.decide(bob, IP, pull("team/app"))
    assert not decision.allowed
    assert decision.rule == 'repository."team".access_policy.default'
    # The repository allows, the global policy does not: denied by the global one.
    decision = policy.decide(ANONYMOUS, IP, pull("public/x"))
    assert not decision.allowed
    assert decision.rule == "global.access_policy.default"
    # Both allow: the repository's rule decided last, the reason says both.
    decision = policy.decide(ALICE, IP, pull("team/app"))
    assert decision.rule == 'repository."team".access_policy.rules[0]'
    assert "global.access_policy.rules[0]" in decision.reason


def test_namespaces_match_whole_components() -> None:
    policy = engine(None, repositories={"team": ("deny", ["false"])})
    assert not policy.decide(ALICE, IP, pull("team")).allowed
    assert not policy.decide(ALICE, IP, pull("team/app/x")).allowed
    assert policy.decide(ALICE, IP, pull("teams/app")).allowed
    assert policy.decide(ALICE, IP, pull("other")).allowed
    # Only repository actions meet a repository's policy.
    assert policy.decide(ALICE, IP, PolicyRequest("list-catalog")).allowed


def test_no_policy_allows_and_says_so() -> None:
    policy = engine()
    assert not policy.configured
    decision = policy.decide(ANONYMOUS, IP, push())
    assert decision.allowed
    assert decision.rule is None
    assert "no access policy" in decision.reason


def test_a_token_access_claim_restricts_whatever_the_policy_allows() -> None:
    token = Identity(
        "ci",
        "ci",
        "token.external",
        "token",
        access=(Access("repository", "team/app", frozenset({"pull"})),),
    )
    policy = engine(["true"])
    assert policy.decide(token, IP, pull("team/app")).allowed
    assert policy.decide(
        token, IP, PolicyRequest("get-blob", "team/app", digest="sha256:x")
    ).allowed
    decision = policy.decide(token, IP, push("team/app", "v1"))
    assert not decision.allowed
    assert "access claim" in decision.reason
    assert not policy.decide(token, IP, pull("team/other")).allowed
    assert not policy.decide(token, IP, PolicyRequest("list-catalog")).allowed
    assert policy.decide(token, IP, PolicyRequest("get-api-version")).allowed  # ungated
    everything = Identity(
        "ci", "ci", "token.external", "token", access=(Access("repository", "x", frozenset("*")),)
    )
    assert policy.decide(everything, IP, PolicyRequest("delete-blob", "x", digest="d")).allowed


def test_decisions_are_remembered_per_variable_set() -> None:
    policy = engine(["identity.oidc != null && identity.oidc.claims['ref'] == 'refs/heads/main'"])
    main = Identity("s", "s", "oidc.gh", "oidc", claims={"ref": "refs/heads/main"})
    branch = Identity("s", "s", "oidc.gh", "oidc", claims={"ref": "refs/heads/dev"})
    for _ in range(3):
        assert policy.decide(main, IP, push()).allowed
        assert not policy.decide(branch, IP, push()).allowed
    assert policy.decide(main, IP, push()) is policy.decide(main, IP, push())


def test_allows_pull() -> None:
    policy = engine(None, repositories={"secret": ("deny", ["identity.username == 'alice'"])})
    assert policy.allows_pull(ALICE, IP, "secret/x")
    assert not policy.allows_pull(ANONYMOUS, IP, "secret/x")
    assert policy.allows_pull(ANONYMOUS, IP, "public/x")


def test_the_decision_memo_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    from angos_core.policy import engine as engine_module

    monkeypatch.setattr(engine_module, "CACHE_SIZE", 4)
    policy = engine(["request.digest.endsWith('7')"])
    requests = [PolicyRequest("get-blob", "a", digest=f"sha256:{i}") for i in range(10)]
    for _ in range(2):
        assert [policy.decide(ALICE, IP, r).allowed for r in requests] == [
            i == 7 for i in range(10)
        ]
    assert len(policy._cache) == 4

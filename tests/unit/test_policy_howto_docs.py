"""Every config of docs/how-to-access-policies.md loads (with the plugins its tables name),
and its policies decide as the page says."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

from angos_core.auth.grants import anonymous_grants
from angos_core.config import AngosConfig, parse_config
from angos_core.identity import Access, Identity
from angos_core.plugins import load_catalogue
from angos_core.policy import PolicyRequest

DOC = Path(__file__).parents[2] / "docs" / "how-to-access-policies.md"


def configs() -> list[AngosConfig]:
    found = []
    catalogue = load_catalogue()
    for block in re.findall(r"```toml\n(.*?)```", DOC.read_text(), re.S):
        data: dict[str, Any] = tomllib.loads(block)
        data["blob_store"] = {"fs": {"root_dir": "/nonexistent/angos-docs"}}
        found.append(parse_config(data, catalogue))
    return found


def allowed(config: AngosConfig, who: Identity | None, action: str, repository: str) -> bool:
    request = PolicyRequest(action, repository)
    return config.policy.decide(who, "10.0.0.1", request).allowed


def test_the_steps_load_and_decide_as_described() -> None:
    public, public_tokens, ci, read_only, webhook = configs()
    admin = Identity("admin", "admin", "identity", "basic")
    reader = Identity("reader", "reader", "identity", "basic")
    claims = {"repository": "acme/app", "ref": "refs/heads/main"}
    main = Identity("s", "s", "oidc.github", "oidc", claims=claims)
    fork = Identity("s", "s", "oidc.github", "oidc", claims={**claims, "ref": "refs/pull/1"})
    assert allowed(public, None, "get-manifest", "public/base")
    assert not allowed(public, None, "put-manifest", "public/base")
    assert not allowed(public, None, "get-manifest", "team/app")
    assert allowed(public, admin, "put-manifest", "team/app")
    # With the token service: an anonymous token for a public pull, nothing more.
    pull_public = [Access("repository", "public/base", frozenset({"pull"}))]
    assert anonymous_grants(public_tokens.policy, "10.0.0.1", pull_public) == tuple(pull_public)
    for scope in (
        Access("repository", "public/base", frozenset({"pull", "push"})),
        Access("repository", "team/app", frozenset({"pull"})),
        Access("registry", "catalog", frozenset({"*"})),
    ):
        assert anonymous_grants(public_tokens.policy, "10.0.0.1", [scope]) == ()
    assert allowed(ci, main, "put-manifest", "ci/app")
    assert not allowed(ci, main, "delete-manifest", "ci/app")
    assert not allowed(ci, fork, "put-manifest", "ci/app")
    assert not allowed(ci, main, "put-manifest", "ci/other")
    assert allowed(read_only, reader, "get-manifest", "team/app")
    assert not allowed(read_only, reader, "put-manifest", "team/app")
    assert not allowed(read_only, reader, "get-manifest", "secret/db")
    assert allowed(read_only, admin, "get-manifest", "secret/db")
    (gate,) = webhook.selected("authorizer")
    assert gate.name == "webhook" and gate.entries == ("release-gate",)
    assert gate.settings["release-gate"].timeout_ms == 500

"""The policies of docs/access-policies.md load, and decide as the page says."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

from angos_core.config import parse_config
from angos_core.identity import Identity
from angos_core.plugins import load_catalogue
from angos_core.policy import PolicyEngine, PolicyRequest

DOC = Path(__file__).parents[2] / "docs" / "access-policies.md"


def engines() -> list[PolicyEngine]:
    found = []
    for block in re.findall(r"```toml\n(.*?)```", DOC.read_text(), re.S):
        data: dict[str, Any] = tomllib.loads(block)
        data.pop("auth", None)  # the authenticators' plugins are not what is checked here
        data["blob_store"] = {"fs": {"root_dir": "/nonexistent/angos-docs"}}
        found.append(parse_config(data, load_catalogue()).policy)
    return found


def test_every_policy_of_the_page_loads() -> None:
    assert len(engines()) == 5


def test_the_worked_policies_decide_as_described() -> None:
    _, public, ci, read_only, _ = engines()
    admin = Identity("admin", "admin", "identity", "basic")
    reader = Identity("reader", "reader", "identity", "basic")
    main = Identity(
        "s", "s", "oidc.github", "oidc", claims={"repository": "acme/app", "ref": "refs/heads/main"}
    )
    branch = Identity(
        "s", "s", "oidc.github", "oidc", claims={"repository": "acme/app", "ref": "refs/heads/x"}
    )
    ip = "192.0.2.1"

    def allowed(engine: PolicyEngine, who: Identity | None, action: str, repo: str) -> bool:
        tags = ("v1",) if action == "put-manifest" else None
        return engine.decide(who, ip, PolicyRequest(action, repo, tags=tags)).allowed

    assert allowed(public, None, "get-manifest", "public/base")
    assert not allowed(public, None, "get-manifest", "team/app")
    assert not allowed(public, None, "put-manifest", "public/base")
    assert not public.decide(None, ip, PolicyRequest("get-api-version")).allowed
    assert allowed(public, admin, "put-manifest", "team/app")

    assert allowed(ci, main, "put-manifest", "ci/app")
    assert not allowed(ci, main, "delete-manifest", "ci/app")
    assert not allowed(ci, main, "put-manifest", "ci/other")
    assert not allowed(ci, branch, "put-manifest", "ci/app")

    assert allowed(read_only, reader, "get-blob", "any/repo")
    assert read_only.decide(reader, ip, PolicyRequest("list-catalog")).allowed
    assert not allowed(read_only, reader, "put-manifest", "any/repo")
    assert not allowed(read_only, None, "get-blob", "any/repo")
    assert allowed(read_only, admin, "delete-manifest", "any/repo")

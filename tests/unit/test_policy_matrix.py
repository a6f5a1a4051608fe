"""A policy matrix: 4 identities x 5 repositories x every action (380 cells), decided by a
policy loaded from TOML, each request built from its HTTP form by ``policy_request``.

The expected decisions below are written out by hand from the policy's text, one string per
identity and repository, one character per action in ``ACTIONS_ORDER`` (``A`` allow, ``.``
deny); nothing in this file derives them from the engine.
"""

from __future__ import annotations

import tomllib
from typing import Any

from multidict import MultiDict

from angos_core.config import parse_config
from angos_core.identity import Identity
from angos_core.plugins import load_catalogue
from angos_core.policy import ACTIONS, policy_request

POLICY = """
[blob_store.fs]
root_dir = "/nonexistent/angos-matrix"

[global.access_policy]
default = "deny"
rules = [
  # Probes for everyone; the API version and tokens for any identity.
  '''request.action in ['healthz', 'readyz'] ||
     (identity.username != null && request.action in ['get-api-version', 'get-token'])''',
  "identity.username == 'admin'",
  '''identity.username == 'reader' &&
     request.action in
       ['get-manifest', 'get-blob', 'get-referrers', 'list-tags', 'list-catalog']''',
  # CI from one GitHub repository: pull and push under ci/, never delete.
  '''identity.oidc != null && identity.oidc.provider_name == 'github' &&
     identity.oidc.claims['repository'] == 'acme/app' &&
     has(request.namespace) && request.namespace.startsWith('ci/') &&
     !request.action.startsWith('delete-')''',
  # Public pull.
  '''has(request.namespace) && request.namespace.startsWith('public/') &&
     request.action in ['get-manifest', 'get-blob', 'list-tags', 'get-referrers']''',
]

[repository."ci/tool".access_policy]
default = "deny"
rules = [
  "identity.username in ['admin', 'reader']",
  "identity.oidc != null && identity.oidc.claims['repository'] == 'acme/tool'",
]

[repository."secret".access_policy]
default = "deny"
rules = ["identity.username == 'admin' && identity.client_ip.startsWith('10.')"]
"""

#: The order of the characters of EXPECTED: the spec's actions, written out again here.
ACTIONS_ORDER = [
    "get-api-version",
    "start-upload",
    "mount-blob",
    "update-upload",
    "complete-upload",
    "get-upload",
    "cancel-upload",
    "get-blob",
    "delete-blob",
    "put-manifest",
    "get-manifest",
    "delete-manifest",
    "get-referrers",
    "list-catalog",
    "list-tags",
    "get-token",
    "healthz",
    "readyz",
    "metrics",
]
READS = {"get-blob", "get-manifest", "get-referrers", "list-tags", "list-catalog"}
WRITES = {
    "start-upload",
    "mount-blob",
    "update-upload",
    "complete-upload",
    "cancel-upload",
    "put-manifest",
    "delete-blob",
    "delete-manifest",
}

REPOSITORIES = ["public/base", "ci/app", "ci/tool", "team/app", "secret/keys"]

#: identity -> repository -> one character per action of ACTIONS_ORDER.
#:                      apiv  upload....... blob  manif  refs  cat tags tok hz rz met
EXPECTED = {
    "admin": {
        "public/base": "AAAAAAAAAAAAAAAAAAA",
        "ci/app": "AAAAAAAAAAAAAAAAAAA",
        "ci/tool": "AAAAAAAAAAAAAAAAAAA",
        "team/app": "AAAAAAAAAAAAAAAAAAA",
        "secret/keys": "AAAAAAAAAAAAAAAAAAA",
    },
    "ci": {
        "public/base": "A......A..A.A.AAAA.",
        "ci/app": "AAAAAAAA.AA.A.AAAA.",
        "ci/tool": "A..............AAA.",
        "team/app": "A..............AAA.",
        "secret/keys": "A..............AAA.",
    },
    "reader": {
        "public/base": "A......A..A.AAAAAA.",
        "ci/app": "A......A..A.AAAAAA.",
        "ci/tool": "A......A..A.AAAAAA.",
        "team/app": "A......A..A.AAAAAA.",
        "secret/keys": "A............A.AAA.",
    },
    "anonymous": {
        "public/base": ".......A..A.A.A.AA.",
        "ci/app": "................AA.",
        "ci/tool": "................AA.",
        "team/app": "................AA.",
        "secret/keys": "................AA.",
    },
}

IDENTITIES: dict[str, tuple[Identity | None, str]] = {
    "admin": (Identity("admin", "admin", "identity", "basic"), "10.1.2.3"),
    "ci": (
        Identity(
            "repo:acme/app:ref:refs/heads/main",
            "repo:acme/app:ref:refs/heads/main",
            "oidc.github",
            "oidc",
            claims={"repository": "acme/app", "ref": "refs/heads/main", "actor": "octocat"},
        ),
        "192.0.2.7",
    ),
    "reader": (Identity("reader", "reader", "identity", "basic"), "192.0.2.8"),
    "anonymous": (None, "192.0.2.9"),
}

D = "sha256:" + "b" * 64
U = "3f2a7c1e-0000-4000-8000-000000000000"

#: action -> how a client asks for it: (method, route name, query).
HTTP_FORM: dict[str, tuple[str, str, list[tuple[str, str]]]] = {
    "get-api-version": ("GET", "base", []),
    "start-upload": ("POST", "uploads", []),
    "mount-blob": ("POST", "uploads", [("mount", D), ("from", "public/base")]),
    "update-upload": ("PATCH", "upload", []),
    "complete-upload": ("PUT", "upload", [("digest", D)]),
    "get-upload": ("GET", "upload", []),
    "cancel-upload": ("DELETE", "upload", []),
    "get-blob": ("GET", "blob", []),
    "delete-blob": ("DELETE", "blob", []),
    "put-manifest": ("PUT", "manifest", []),
    "get-manifest": ("HEAD", "manifest", []),
    "delete-manifest": ("DELETE", "manifest", []),
    "get-referrers": ("GET", "referrers", []),
    "list-catalog": ("GET", "catalog", []),
    "list-tags": ("GET", "tags", []),
    "get-token": ("GET", "token", []),
    "healthz": ("GET", "healthz", []),
    "readyz": ("GET", "readyz", []),
    "metrics": ("GET", "metrics", []),
}


def decisions() -> dict[tuple[str, str, str], bool]:
    engine = parse_config(tomllib.loads(POLICY), load_catalogue()).policy
    result = {}
    for who, (identity, client_ip) in IDENTITIES.items():
        for repository in REPOSITORIES:
            params = {"name": repository, "reference": "v1", "digest": D, "uuid": U}
            for action in ACTIONS_ORDER:
                method, route, query = HTTP_FORM[action]
                request = policy_request(method, route, params, MultiDict(query))
                assert request is not None and request.action == action
                allowed = engine.decide(identity, client_ip, request).allowed
                result[(who, repository, action)] = allowed
    return result


def test_the_matrix_covers_every_action() -> None:
    assert list(ACTIONS) == ACTIONS_ORDER
    assert all(
        len(row) == len(ACTIONS_ORDER) for rows in EXPECTED.values() for row in rows.values()
    )


def test_policy_matrix() -> None:
    actual = decisions()
    assert len(actual) == 4 * 5 * 19
    wrong: list[str] = []
    unauthorized_writes = wrongly_refused_reads = 0
    for (who, repository, action), allowed in actual.items():
        expected = EXPECTED[who][repository][ACTIONS_ORDER.index(action)] == "A"
        if allowed != expected:
            wrong.append(f"{who} {action} {repository}: got {'allow' if allowed else 'deny'}")
            unauthorized_writes += allowed and action in WRITES
            wrongly_refused_reads += (not allowed) and action in READS
    assert unauthorized_writes == 0
    assert wrongly_refused_reads == 0
    assert wrong == []


def test_the_matrix_is_not_trivial() -> None:
    cells: list[Any] = [c for rows in EXPECTED.values() for row in rows.values() for c in row]
    assert 100 < cells.count("A") < 280

"""``angos policy check``: the decision and the rule that made it, ``--table``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from angos_core.cli import main

CONFIG = """
[blob_store.fs]
root_dir = "{root}"

[global.access_policy]
default = "deny"
rules = [
  "identity.username == 'admin'",
  "request.action in ['get-manifest', 'get-blob', 'list-tags']",
  "identity.oidc != null && identity.oidc.claims['repository'] == 'acme/app'",
]

[repository."team".access_policy]
default = "allow"
rules = ["has(request.tags) && 'latest' in request.tags && identity.oidc != null"]
"""


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(CONFIG.format(root=tmp_path / "data"))
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[str], str]:
    code = main(["policy", "check", *argv])
    out, err = capsys.readouterr()
    return code, out.splitlines(), err


def test_check_allow_names_the_rule(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, lines, _ = run(
        capsys, "-c", str(config), "--identity", "admin", "--action", "put-manifest",
        "--repository", "team/app", "--tag", "v1",
    )  # fmt: skip
    assert code == 0
    assert lines == [
        "allow  global.access_policy.rules[0]  identity.username == 'admin'",
        "reason: allowed by global.access_policy.rules[0]; allowed by "
        'repository."team".access_policy.default (no rule matched)',
    ]


def test_check_deny_by_default_exits_1(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, lines, _ = run(
        capsys, "-c", str(config), "--identity", "alice", "--action", "put-manifest",
        "--repository", "team/app", "--tag", "v1",
    )  # fmt: skip
    assert code == 1
    assert lines == [
        "deny   default  global.access_policy.default",
        "reason: denied by global.access_policy.default (no rule matched)",
    ]


def test_check_an_oidc_identity_from_claims(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    claims = tmp_path / "claims.json"
    claims.write_text(
        json.dumps({"sub": "repo:acme/app:ref:refs/heads/main", "repository": "acme/app"})
    )
    base = ["-c", str(config), "--claims", str(claims), "--provider", "github"]
    code, lines, _ = run(
        capsys, *base, "--action", "put-manifest", "--repository", "other/app", "--tag", "v1"
    )
    assert code == 0
    assert lines[0] == (
        "allow  global.access_policy.rules[2]  "
        "identity.oidc != null && identity.oidc.claims['repository'] == 'acme/app'"
    )
    # The repository's deny rule: CI may not move latest under team/.
    code, lines, _ = run(
        capsys, *base, "--action", "put-manifest", "--repository", "team/app", "--tag", "latest"
    )
    assert code == 1
    assert lines[0] == (
        'deny   repository."team".access_policy.rules[0]  '
        "has(request.tags) && 'latest' in request.tags && identity.oidc != null"
    )


def test_table_prints_every_action(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, lines, _ = run(capsys, "-c", str(config), "--repository", "team/app", "--table")
    assert code == 0
    assert len(lines) == 19
    rows = {line.split()[0]: line.split()[1] for line in lines}
    assert rows["get-manifest"] == "allow"
    assert rows["get-blob"] == "allow"
    assert rows["list-tags"] == "allow"
    assert [action for action, verdict in rows.items() if verdict == "allow"] == [
        "get-blob",
        "get-manifest",
        "list-tags",
    ]
    assert lines[0] == "get-api-version  deny   default  global.access_policy.default"
    assert lines[10] == (
        "get-manifest     allow  global.access_policy.rules[1]  "
        "request.action in ['get-manifest', 'get-blob', 'list-tags']"
    )


@pytest.mark.parametrize(
    ("argv", "key"),
    [
        (["--action", "push", "--repository", "a"], "--action"),
        (["--action", "get-blob"], "--repository"),
        (["--claims", "/nonexistent.json", "--action", "healthz"], "--claims"),
        (["--table"], "--repository"),
        (["--repository", "a"], "--action"),
    ],
)
def test_bad_arguments_are_one_line(
    config: Path, capsys: pytest.CaptureFixture[str], argv: list[str], key: str
) -> None:
    code, lines, err = run(capsys, "-c", str(config), *argv)
    assert code == 2
    assert lines == []
    assert err.count("\n") == 1
    assert f"config error: {key}:" in err


def test_claims_need_a_provider(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    claims = tmp_path / "claims.json"
    claims.write_text("{}")
    code, _, err = run(capsys, "-c", str(config), "--claims", str(claims), "--action", "healthz")
    assert code == 2
    assert "--provider: is required with --claims" in err

"""Access-policy cells end to end, with real clients against ``angos serve``: a read-only
user's docker push is refused with 403 (docker prints it), an anonymous docker pull of a
public namespace works, the CI identity (an OIDC token) pushes with podman, an oras push the
policy denies is refused; and immutable tags: docker push of a moved immutable tag fails with
the message, while ``latest`` (excluded) moves."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import oras.provider
import pytest
from angos_auth_basic.testing import cheap_argon2

from angos_core.testing.oidc_issuer import OidcIssuer
from tests.e2e.oci_images import write_rootfs_tar
from tests.e2e.test_auth_basic_e2e import login_with_stdin
from tests.e2e.test_podman_e2e import LOCAL, Podman
from tests.e2e.test_podman_e2e import podman as podman  # the fixture
from tests.support.angos_server import AngosServer, AngosServerFactory, fs_config

if TYPE_CHECKING:
    from tests.support.docker_engine import DockerEngine

pytestmark = pytest.mark.e2e

ADMIN_PW = "admin-e2e-policy-pw"
READER_PW = "reader-e2e-policy-pw"
POLICY = """
[global]
immutable_tags = true
immutable_tags_exclusions = ["^latest$"]

[global.access_policy]
default = "deny"
rules = [
  "request.action in ['healthz', 'readyz']",
  "identity.username != null && request.action == 'get-api-version'",
  "identity.username == 'admin'",
  '''has(request.namespace) && request.namespace.startsWith('public/') &&
     request.action in ['get-manifest', 'get-blob', 'get-referrers', 'list-tags']''',
  '''identity.username == 'reader' &&
     request.action in ['get-manifest', 'get-blob', 'get-referrers', 'list-tags']''',
  '''identity.oidc != null && identity.oidc.provider_name == 'github-actions' &&
     identity.oidc.claims['repository'] == 'acme/app' &&
     has(request.namespace) && request.namespace == 'ci/app' &&
     !request.action.startsWith('delete-')''',
]
"""


@pytest.fixture
def policy_registry(
    angos_server_factory: AngosServerFactory, oidc_issuer: OidcIssuer, tmp_path: Path
) -> Iterator[AngosServer]:
    config = fs_config(tmp_path / "registry-data") + (
        f'[auth.identity.admin]\nusername = "admin"\npassword = "{cheap_argon2(ADMIN_PW)}"\n'
        f'[auth.identity.reader]\nusername = "reader"\npassword = "{cheap_argon2(READER_PW)}"\n'
        "[auth.oidc.github-actions]\n"
        f'issuer = "{oidc_issuer.issuer}"\n'
        'required_audience = "angos"\n'
        'required_claims = ["repository"]\n' + POLICY
    )
    server = angos_server_factory(config)
    yield server
    log = server.stderr_text()
    for secret in (ADMIN_PW, READER_PW):
        assert secret not in log


def image(docker: DockerEngine, tmp_path: Path, ref: str, content: bytes) -> None:
    tar = write_rootfs_tar(tmp_path / f"{abs(hash(content))}.tar", {"etc/hello": content})
    docker.run("import", str(tar), ref)


def login(docker: DockerEngine, host: str, user: str, password: str) -> None:
    done = login_with_stdin([docker.docker, "login", "-u", user, host], password, docker.env)
    assert done.returncode == 0, done.stderr


#: A second server on the same store, with the token service: docker, not logged in, is sent
#: to ``/token`` by the Bearer challenge of ``GET /v2/`` and gets an anonymous token for what
#: the policy lets anyone do (pull ``public/...``); logged in, it sends its password there.
#: (With a Basic challenge docker refuses to make an anonymous request at all: "no basic auth
#: credentials", the last cell below.)
TOKEN_SERVICE = """
[auth.token_service]
secret_key = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
"""
TOKEN_POLICY = POLICY.replace(
    "rules = [\n", "rules = [\n  \"request.action == 'get-token'\",\n", 1
).replace("immutable_tags = true", "immutable_tags = false", 1)


def test_docker_cells(
    docker_engine: DockerEngine,
    policy_registry: AngosServer,
    angos_server_factory: AngosServerFactory,
    tmp_path: Path,
) -> None:
    docker, host = docker_engine, policy_registry.host
    public, team = f"{host}/public/base:1", f"{host}/team/app:1"
    image(docker, tmp_path, public, b"a public image\n")
    docker.run("tag", public, team)
    tokens = angos_server_factory(
        fs_config(tmp_path / "registry-data")
        + f'[auth.identity.admin]\nusername = "admin"\npassword = "{cheap_argon2(ADMIN_PW)}"\n'
        + TOKEN_SERVICE
        + TOKEN_POLICY
    )
    anonymous_public = f"{tokens.host}/public/base:1"
    anonymous_team = f"{tokens.host}/team/app:1"
    new_public = f"{tokens.host}/public/new:1"
    try:
        login(docker, host, "admin", ADMIN_PW)
        docker.run("push", public)
        docker.run("push", team)
        docker.run("logout", host)

        # Anonymous, through the token service: pulls the public namespace, nothing else,
        # and pushes nothing.
        docker.run("pull", anonymous_public)
        refused = docker.run("pull", anonymous_team, check=False)
        assert refused.returncode != 0
        assert "authentication required" in refused.stderr, refused.stderr
        docker.run("tag", public, new_public)
        pushed = docker.run("push", new_public, check=False)
        assert pushed.returncode != 0
        assert "authentication required" in pushed.stderr, pushed.stderr
        # Logged in to the same server, the admin pushes.
        login(docker, tokens.host, "admin", ADMIN_PW)
        docker.run("push", new_public)
        docker.run("logout", tokens.host)
        tokens.wait_for_log('"GET /token?')

        # The read-only user pulls, and its push is refused with the policy's 403.
        login(docker, host, "reader", READER_PW)
        docker.run("image", "rm", team)
        docker.run("pull", team)
        pushed = docker.run("push", team, check=False)
        assert pushed.returncode != 0
        assert pushed.stderr.strip() == "denied", pushed.stderr  # the 403's DENIED code
        policy_registry.wait_for_log('"PUT /v2/team/app/manifests/1" 403')
        # Anonymous on the authenticated server: docker is told to log in.
        docker.run("logout", host)
        docker.run("image", "rm", team)
        anonymous = docker.run("pull", team, check=False)
        assert anonymous.returncode != 0
        assert "no basic auth credentials" in anonymous.stderr, anonymous.stderr
    finally:
        docker.run("logout", host, check=False)
        docker.run("logout", tokens.host, check=False)
        docker.run(
            "image", "rm", "-f", public, team, anonymous_public, new_public, check=False
        )  # fmt: skip


def test_docker_push_of_a_moved_immutable_tag_fails_and_latest_moves(
    docker_engine: DockerEngine, policy_registry: AngosServer, tmp_path: Path
) -> None:
    docker, host = docker_engine, policy_registry.host
    v1, latest = f"{host}/team/immutable:v1", f"{host}/team/immutable:latest"

    def image_id(ref: str) -> str:
        return docker.run("image", "inspect", "--format", "{{.Id}}", ref).stdout.strip()

    try:
        login(docker, host, "admin", ADMIN_PW)
        image(docker, tmp_path, v1, b"first\n")
        docker.run("tag", v1, latest)
        first = image_id(v1)
        docker.run("push", v1)
        docker.run("push", latest)
        docker.run("image", "rm", v1, latest)

        image(docker, tmp_path, v1, b"second, another manifest\n")
        docker.run("tag", v1, latest)
        second = image_id(v1)
        moved = docker.run("push", v1, check=False)
        assert moved.returncode != 0
        assert "Tag 'v1' is immutable and cannot be overwritten" in moved.stderr, moved.stderr
        docker.run("push", latest)  # excluded: it moves

        docker.run("image", "rm", v1, latest)
        docker.run("pull", v1)
        docker.run("pull", latest)
        assert image_id(v1) == first
        assert image_id(latest) == second != first
    finally:
        docker.run("logout", host, check=False)
        docker.run("image", "rm", "-f", v1, latest, check=False)


def test_podman_push_by_the_ci_identity(
    podman: Podman, policy_registry: AngosServer, oidc_issuer: OidcIssuer, tmp_path: Path
) -> None:
    host = policy_registry.host
    authfile = tmp_path / "auth.json"
    authfile.write_text('{"auths": {}}')
    token = oidc_issuer.token(sub="repo:acme/app:ref:refs/heads/main", repository="acme/app")
    tar = write_rootfs_tar(tmp_path / "rootfs.tar", {"etc/hello": b"built by CI\n"})
    podman.run("import", str(tar), LOCAL)
    login = [podman.binary, *podman.global_args, "login", "--tls-verify=false",
             f"--authfile={authfile}", "-u", "github-actions", host]  # fmt: skip
    done = login_with_stdin(login, token, podman.env)
    assert done.returncode == 0, done.stderr
    push = ["push", "--tls-verify=false", f"--authfile={authfile}", LOCAL]
    podman.run(*push, f"{host}/ci/app:1")
    # The same identity may not push anywhere else.
    other = podman.run(*push, f"{host}/ci/other:1", check=False)
    assert other.returncode != 0
    assert "denied" in other.stderr.lower() or "403" in other.stderr, other.stderr
    # A token of another repository's workflow may not push ci/app.
    stranger = oidc_issuer.token(sub="repo:evil/app:ref:refs/heads/main", repository="evil/app")
    assert login_with_stdin(login, stranger, podman.env).returncode == 0
    refused = podman.run(*push, f"{host}/ci/app:2", check=False)
    assert refused.returncode != 0
    log = policy_registry.stderr_text()
    for part in (*token.split("."), *stranger.split(".")):
        assert part not in log
    assert host in json.loads(authfile.read_text())["auths"]  # the test's file, not the machine's


def test_oras_push_denied_by_policy(policy_registry: AngosServer, tmp_path: Path) -> None:
    payload = tmp_path / "artifact.txt"
    payload.write_bytes(b"an artifact the reader may not push\n")
    client = oras.provider.Registry(policy_registry.host, insecure=True, auth_backend="basic")
    client.session.trust_env = False
    client.auth.set_basic_auth("reader", READER_PW)
    target = f"{policy_registry.host}/team/artifact:v1"
    with pytest.raises(Exception) as refused:  # oras-py raises on a refused upload
        response = client.push(
            target, files=[f"{payload}:text/plain"], disable_path_validation=True, quiet=True
        )
        raise AssertionError(f"the reader pushed an artifact: {response.status_code}")
    assert "DENIED" in str(refused.value), refused.value
    admin = oras.provider.Registry(policy_registry.host, insecure=True, auth_backend="basic")
    admin.session.trust_env = False
    admin.auth.set_basic_auth("admin", ADMIN_PW)
    pushed = admin.push(
        target, files=[f"{payload}:text/plain"], disable_path_validation=True, quiet=True
    )
    assert pushed.status_code == 201, pushed.text

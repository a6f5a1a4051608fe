"""docker login with an OIDC token as the password, as in a GitHub Actions job:
``docker login -u github-actions -p "$TOKEN"``, then push and pull; an expired token fails
the login; logged out, the pull is refused."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from angos_core.testing.oidc_issuer import OidcIssuer
from tests.e2e.oci_images import write_rootfs_tar
from tests.support.angos_server import AngosServerFactory, fs_config

if TYPE_CHECKING:
    from tests.support.docker_engine import DockerEngine

pytestmark = pytest.mark.e2e


def test_docker_login_with_an_oidc_token_push_pull(
    docker_engine: DockerEngine,
    angos_server_factory: AngosServerFactory,
    oidc_issuer: OidcIssuer,
    tmp_path: Path,
) -> None:
    docker = docker_engine
    server = angos_server_factory(
        fs_config(tmp_path / "registry-data")
        + "[auth.oidc.github-actions]\n"
        + f'issuer = "{oidc_issuer.issuer}"\n'
        + 'required_audience = "angos"\n'
        + 'required_claims = ["repository"]\n'
        + 'username_claim = "repository"\n'
    )
    host = server.host
    ref = f"{host}/ci/app:1"
    tar = write_rootfs_tar(tmp_path / "rootfs.tar", {"etc/hello": b"pushed by a CI job\n"})
    docker.run("import", str(tar), "angos-oidc-e2e:1")
    docker.run("tag", "angos-oidc-e2e:1", ref)
    try:
        now = int(time.time())
        expired = oidc_issuer.token(repository="org/app", iat=now - 900, nbf=None, exp=now - 300)
        refused = docker.run("login", host, "-u", "github-actions", "-p", expired, check=False)
        assert refused.returncode != 0
        assert "401 Unauthorized" in refused.stderr  # the reason is in the body docker hides
        assert expired not in refused.stdout + refused.stderr

        token = oidc_issuer.token(sub="repo:org/app:ref:refs/heads/main", repository="org/app")
        login = docker.run("login", host, "-u", "github-actions", "-p", token)
        assert "Login Succeeded" in login.stdout
        push = docker.run("push", ref)
        assert "digest: sha256:" in push.stdout, push.stdout
        docker.run("image", "rm", ref)
        docker.run("pull", ref)

        docker.run("logout", host)
        docker.run("image", "rm", ref)
        anonymous = docker.run("pull", ref, check=False)
        assert anonymous.returncode != 0
        assert "no basic auth credentials" in anonymous.stderr  # the 401 Basic challenge
        log = server.stderr_text()
        assert "oidc.github-actions: token rejected: token expired" in log
        for part in (*token.split("."), *expired.split(".")):
            assert part not in log
    finally:
        docker.run("logout", host, check=False)
        docker.run("image", "rm", "-f", ref, "angos-oidc-e2e:1", check=False)

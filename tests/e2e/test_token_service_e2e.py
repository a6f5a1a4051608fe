"""docker login, push and pull, skopeo push and containerd pull, through the registry's own
token service.

``angos serve`` runs with Basic identities (angos-auth-basic) and ``[auth.token_service]``
(angos-auth-token): every 401 sends docker to ``/token``, where its password buys a token
for the scope it needs. A wrong password fails ``docker login``; a push without logging in
fails with the Bearer challenge.
"""

from __future__ import annotations

import base64
import secrets
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

import argon2
import pytest

from tests.e2e.oci_images import run_skopeo, write_rootfs_tar
from tests.support.angos_server import AngosServer, fs_config, loopback

if TYPE_CHECKING:
    from tests.e2e.oci_images import Source
    from tests.support.angos_server import AngosServerFactory
    from tests.support.containerd_engine import ContainerdEngine
    from tests.support.docker_engine import DockerEngine

pytestmark = pytest.mark.e2e

PASSWORD = "e2e-" + secrets.token_urlsafe(12)


@pytest.fixture
def token_registry(angos_server_factory: AngosServerFactory, tmp_path: Path) -> AngosServer:
    password_hash = argon2.PasswordHasher().hash(PASSWORD)
    secret_key = base64.b64encode(secrets.token_bytes(32)).decode()
    toml = fs_config(tmp_path / "registry-data") + (
        f'\n[auth.identity.ci]\nusername = "ci"\npassword = "{password_hash}"\n'
        f'\n[auth.token_service]\nsecret_key = "{secret_key}"\n'
    )
    return angos_server_factory(toml)


def test_login_push_pull_through_the_token_service(
    docker_engine: DockerEngine, token_registry: AngosServer, tmp_path: Path
) -> None:
    docker = docker_engine
    host = f"127.0.0.1:{token_registry.port}"
    ref = f"{host}/e2e/token:1"

    # Unauthenticated: the Bearer challenge pointing at the token service.
    with pytest.raises(urllib.error.HTTPError) as refused:
        loopback.open(urllib.request.Request(f"http://{host}/v2/e2e/token/tags/list"), timeout=10)
    assert refused.value.code == 401
    challenge = refused.value.headers["WWW-Authenticate"]
    assert challenge == (
        f'Bearer realm="http://{host}/token",service="angos",scope="repository:e2e/token:pull"'
    )

    tar = write_rootfs_tar(tmp_path / "rootfs.tar", {"etc/hello": b"token e2e\n"})
    docker.run("import", str(tar), ref)
    pushed = docker.run("push", ref, check=False)
    assert pushed.returncode != 0  # not logged in

    # -p: DockerEngine.run takes no stdin; the password is a throwaway of this test.
    wrong = docker.run("login", host, "-u", "ci", "-p", "not-the-password", check=False)
    assert wrong.returncode != 0
    docker.run("login", host, "-u", "ci", "-p", PASSWORD)

    assert "digest: sha256:" in docker.run("push", ref).stdout
    image_id = docker.run("image", "inspect", "--format", "{{.Id}}", ref).stdout.strip()
    docker.run("image", "rm", ref)
    docker.run("pull", ref)
    assert docker.run("image", "inspect", "--format", "{{.Id}}", ref).stdout.strip() == image_id

    log = token_registry.stderr_path.read_text()
    assert PASSWORD not in log
    assert "GET /token" in log or "POST /token" in log


def test_skopeo_pushes_and_containerd_pulls_through_the_token_service(
    containerd_engine: ContainerdEngine, token_registry: AngosServer, skopeo: str, source: Source
) -> None:
    """skopeo asks ``GET /token`` with Basic; containerd tries ``POST /token`` (the OAuth2
    password grant) first."""
    host = f"127.0.0.1:{token_registry.port}"
    ref = f"{host}/e2e/token-multi:v1"
    creds = f"ci:{PASSWORD}"
    with pytest.raises(AssertionError, match=r"401|unauthorized|authentication required"):
        run_skopeo(
            skopeo, "copy", "--all", "--dest-tls-verify=false",
            f"oci:{source.oci.root}:multi", f"docker://{ref}",
        )  # fmt: skip
    run_skopeo(
        skopeo, "copy", "--all", "--preserve-digests", "--dest-tls-verify=false",
        f"--dest-creds={creds}", f"oci:{source.oci.root}:multi", f"docker://{ref}",
    )  # fmt: skip
    ctr = containerd_engine.ctr
    ctr("images", "pull", "--plain-http", "--all-platforms", "--user", creds, ref)
    listed = ctr("images", "ls").stdout
    assert any(
        line.split()[0] == ref and line.split()[2] == source.index.digest
        for line in listed.splitlines()[1:]
    ), listed
    log = token_registry.stderr_path.read_text()
    assert PASSWORD not in log
    assert '"POST /token' in log  # containerd's OAuth2 request

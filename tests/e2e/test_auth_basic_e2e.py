"""End to end with Basic authentication: docker, podman, skopeo, containerd and oras log in to
``angos serve`` with ``[auth.identity]`` and ``[auth.htpasswd]`` users, push and pull; a wrong
password and no credentials are refused with the challenge the clients expect.

Each client keeps its credentials in this test's temporary files (docker's private client
config, podman's ``--authfile``), never in the machine's.
"""

from __future__ import annotations

import base64
import json
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import oras.provider
import pytest
from angos_auth_basic.testing import cheap_argon2, cheap_bcrypt

from tests.e2e.oci_images import OCI_INDEX, OCI_MANIFEST, get_manifest, run_skopeo, write_rootfs_tar
from tests.e2e.test_podman_e2e import LOCAL, Podman
from tests.e2e.test_podman_e2e import podman as podman  # the fixture
from tests.support.angos_server import AngosServer, AngosServerFactory, fs_config, loopback

if TYPE_CHECKING:
    from tests.e2e.oci_images import Source
    from tests.support.containerd_engine import ContainerdEngine
    from tests.support.docker_engine import DockerEngine

pytestmark = pytest.mark.e2e

ALICE_PW = "alice-e2e-correct-horse"  # [auth.identity.alice], Argon2id
BOB_PW = "bob-e2e-battery-staple"  # htpasswd, bcrypt
WRONG_PW = "not-the-password-at-all"
CHALLENGE = 'Basic realm="angos"'


@pytest.fixture
def basic_registry(
    angos_server_factory: AngosServerFactory, tmp_path: Path
) -> Iterator[AngosServer]:
    htpasswd = tmp_path / "htpasswd"
    htpasswd.write_text(f"bob:{cheap_bcrypt(BOB_PW)}\n")
    config = fs_config(tmp_path / "registry-data") + (
        "[auth.identity.alice]\n"
        'username = "alice"\n'
        f'password = "{cheap_argon2(ALICE_PW)}"\n'
        "[auth.htpasswd]\n"
        f'path = "{htpasswd}"\n'
    )
    server = angos_server_factory(config)
    yield server
    # Whatever the clients did, no password reached the server's log.
    log = server.stderr_text()
    for secret in (ALICE_PW, BOB_PW, WRONG_PW):
        assert secret not in log


def status_and_challenge(url: str, method: str = "GET") -> tuple[int, str | None]:
    request = urllib.request.Request(url, method=method)
    try:
        with loopback.open(request, timeout=10) as resp:
            return resp.status, resp.headers.get("WWW-Authenticate")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("WWW-Authenticate")


def login_with_stdin(
    argv: list[str], password: str, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    """``<client> login ... --password-stdin``: the way a script passes a password."""
    return subprocess.run(
        [*argv, "--password-stdin"], input=password, env=env, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip


def test_unauthenticated_requests_get_the_basic_challenge(basic_registry: AngosServer) -> None:
    for method, path in (
        ("GET", "/v2/"),
        ("POST", "/v2/e2e/app/blobs/uploads/"),
        ("PUT", "/v2/e2e/app/manifests/v1"),
        ("GET", "/v2/e2e/app/manifests/v1"),
    ):
        status, challenge = status_and_challenge(basic_registry.url + path, method)
        assert (status, challenge) == (401, CHALLENGE), (method, path)
    assert status_and_challenge(basic_registry.url + "/healthz")[0] == 200


# --------------------------------------------------------------------------- docker


def test_docker_login_push_pull(
    docker_engine: DockerEngine, basic_registry: AngosServer, tmp_path: Path
) -> None:
    docker = docker_engine
    host = basic_registry.host
    ref = f"{host}/e2e/basic:1"
    tar = write_rootfs_tar(tmp_path / "rootfs.tar", {"etc/hello": b"hello with basic auth\n"})
    docker.run("import", str(tar), ref)
    image_id = docker.run("image", "inspect", "--format", "{{.Id}}", ref).stdout.strip()

    # No credentials: the push is refused (docker asks for a login).
    anonymous = docker.run("push", ref, check=False)
    assert anonymous.returncode != 0
    assert "no basic auth credentials" in anonymous.stderr + anonymous.stdout

    wrong = login_with_stdin([docker.docker, "login", "-u", "alice", host], WRONG_PW, docker.env)
    assert wrong.returncode != 0, wrong.stdout
    assert "unauthorized" in wrong.stderr.lower(), wrong.stderr
    unknown = login_with_stdin(
        [docker.docker, "login", "-u", "mallory", host], ALICE_PW, docker.env
    )
    assert unknown.returncode != 0, unknown.stdout

    good = login_with_stdin([docker.docker, "login", "-u", "alice", host], ALICE_PW, docker.env)
    assert good.returncode == 0, good.stderr
    assert "Login Succeeded" in good.stdout
    try:
        push = docker.run("push", ref)
        assert "digest: sha256:" in push.stdout, push.stdout
        docker.run("image", "rm", ref)
        docker.run("pull", ref)
        assert docker.run("image", "inspect", "--format", "{{.Id}}", ref).stdout.strip() == image_id
    finally:
        docker.run("logout", host, check=False)
        docker.run("image", "rm", ref, check=False)
    # Logged out: anonymous again, and the pull is refused.
    pulled = docker.run("pull", ref, check=False)
    assert pulled.returncode != 0
    # docker's answer to a 401 with the Basic challenge when it has no credentials.
    assert "no basic auth credentials" in pulled.stderr + pulled.stdout


# --------------------------------------------------------------------------- podman


def test_podman_login_push_pull_htpasswd_user(
    podman: Podman, basic_registry: AngosServer, tmp_path: Path
) -> None:
    host = basic_registry.host
    authfile = tmp_path / "auth.json"  # never the machine's /run/containers/0/auth.json
    authfile.write_text('{"auths": {}}')  # push and pull want it to exist
    login = [podman.binary, *podman.global_args, "login", "--tls-verify=false",
             f"--authfile={authfile}", "-u", "bob", host]  # fmt: skip
    tar = write_rootfs_tar(tmp_path / "rootfs.tar", {"etc/hello": b"hello from podman\n"})
    image_id = podman.run("import", str(tar), LOCAL).stdout.strip().splitlines()[-1]
    remote = f"{host}/e2e/podman-basic:1"

    anonymous = podman.run(
        "push", "--tls-verify=false", f"--authfile={authfile}", LOCAL, remote, check=False
    )
    assert anonymous.returncode != 0
    assert "unauthorized" in anonymous.stderr.lower() or "401" in anonymous.stderr

    wrong = login_with_stdin(login, WRONG_PW, podman.env)
    assert wrong.returncode != 0, wrong.stdout
    assert host not in json.loads(authfile.read_text())["auths"]

    good = login_with_stdin(login, BOB_PW, podman.env)
    assert good.returncode == 0, good.stderr
    assert "Login Succeeded" in good.stdout
    podman.run("push", "--tls-verify=false", f"--authfile={authfile}", LOCAL, remote)
    podman.run("rmi", LOCAL)
    podman.run("pull", "--tls-verify=false", f"--authfile={authfile}", remote)
    assert f"sha256:{podman.inspect(remote, 'Id')}" == image_id


# --------------------------------------------------------------------------- skopeo


def test_skopeo_creds_round_trip(
    skopeo: str, basic_registry: AngosServer, source: Source, tmp_path: Path
) -> None:
    oci, image = source.oci, source.single
    remote = f"docker://{basic_registry.host}/e2e/skopeo-basic:single"
    copy_to = ["copy", "--preserve-digests", "--dest-tls-verify=false"]

    for creds in ([], ["--dest-creds", f"alice:{WRONG_PW}"]):
        with pytest.raises(AssertionError) as refused:
            run_skopeo(skopeo, *copy_to, *creds, f"oci:{oci.root}:single", remote)
        assert "unauthorized" in str(refused.value).lower() or "401" in str(refused.value)
        assert WRONG_PW not in str(refused.value).split("stdout:", 1)[1]

    run_skopeo(
        skopeo, *copy_to, "--dest-creds", f"alice:{ALICE_PW}", f"oci:{oci.root}:single", remote
    )
    inspected = run_skopeo(
        skopeo, "inspect", "--raw", "--tls-verify=false", "--creds", f"bob:{BOB_PW}", remote
    )
    assert json.loads(inspected.stdout)["mediaType"] == OCI_MANIFEST
    back = tmp_path / "back"
    run_skopeo(
        skopeo, "copy", "--preserve-digests", "--src-tls-verify=false",
        "--src-creds", f"alice:{ALICE_PW}", remote, f"oci:{back}:single",
    )  # fmt: skip
    index = json.loads((back / "index.json").read_text())
    assert [m["digest"] for m in index["manifests"]] == [image.digest]


# --------------------------------------------------------------------------- containerd


def test_containerd_ctr_user_pull_and_push(
    containerd_engine: ContainerdEngine,
    basic_registry: AngosServer,
    skopeo: str,
    source: Source,
) -> None:
    ctr = containerd_engine.ctr
    oci, index = source.oci, source.index
    host = basic_registry.host
    ref = f"{host}/e2e/ctr-basic:v1"
    run_skopeo(
        skopeo, "copy", "--all", "--preserve-digests", "--dest-tls-verify=false",
        "--dest-creds", f"alice:{ALICE_PW}", f"oci:{oci.root}:multi", f"docker://{ref}",
    )  # fmt: skip

    pull = ["images", "pull", "--plain-http", "--all-platforms", "--snapshotter", "native"]
    anonymous = ctr(*pull, ref, check=False)
    assert anonymous.returncode != 0
    assert "401" in anonymous.stderr or "unauthorized" in anonymous.stderr.lower()
    wrong = ctr(*pull, "--user", f"alice:{WRONG_PW}", ref, check=False)
    assert wrong.returncode != 0

    ctr(*pull, "--user", f"bob:{BOB_PW}", ref)
    copy = f"{host}/e2e/ctr-basic/copy:v2"
    ctr("images", "tag", ref, copy)
    ctr("images", "push", "--plain-http", "--user", f"alice:{ALICE_PW}", copy)
    served = get_manifest(basic_registry.url, "e2e/ctr-basic/copy", "v2", accept=OCI_INDEX)
    assert served.status == 401  # anonymous HTTP: refused
    request = urllib.request.Request(
        f"{basic_registry.url}/v2/e2e/ctr-basic/copy/manifests/v2",
        headers={"Accept": OCI_INDEX, "Authorization": _basic("alice", ALICE_PW)},
    )
    with loopback.open(request, timeout=10) as resp:
        assert resp.headers["Docker-Content-Digest"] == index.digest


def _basic(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


# --------------------------------------------------------------------------- oras


def oras_client(
    registry: AngosServer, username: str | None, password: str
) -> oras.provider.Registry:
    # oras-py's default backend expects a token server; Basic is its "basic" backend.
    client = oras.provider.Registry(registry.host, insecure=True, auth_backend="basic")
    client.session.trust_env = False  # 127.0.0.1 never through an http_proxy
    client.auth.set_basic_auth(username, password)
    return client


def test_oras_push_pull_with_basic(basic_registry: AngosServer, tmp_path: Path) -> None:
    payload = tmp_path / "payload.txt"
    payload.write_bytes(b"an artifact behind basic auth\n")
    target = f"{basic_registry.host}/e2e/oras-basic:v1"

    # A wrong password. (Without credentials oras-py's basic backend fails on its own,
    # before any request: anonymous refusals are the other clients' tests.)
    wrong = oras_client(basic_registry, "alice", WRONG_PW)
    with pytest.raises(Exception) as refused:  # oras-py raises on a refused upload
        response = wrong.push(
            target, files=[f"{payload}:text/plain"], disable_path_validation=True, quiet=True
        )
        raise AssertionError(f"pushed with a wrong password: {response.status_code}")
    assert "UNAUTHORIZED" in str(refused.value), refused.value
    assert get_manifest(basic_registry.url, "e2e/oras-basic", "v1", OCI_MANIFEST).status == 401

    client = oras_client(basic_registry, "alice", ALICE_PW)
    response = client.push(
        target, files=[f"{payload}:text/plain"], disable_path_validation=True, quiet=True
    )
    assert response.status_code == 201, response.text
    out = tmp_path / "out"
    pulled = oras_client(basic_registry, "bob", BOB_PW).pull(target, outdir=str(out))
    assert [Path(p).name for p in pulled] == ["payload.txt"]
    assert (out / "payload.txt").read_bytes() == payload.read_bytes()

"""End to end with the real Docker engine: import, push, remove, pull back, same image.

Images come from ``docker import`` of a tar written here: nothing is ever ``docker run``.
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.e2e.oci_images import write_rootfs_tar
from tests.support.angos_server import AngosServer, loopback

if TYPE_CHECKING:
    from tests.e2e.conftest import Registry
    from tests.support.docker_engine import DockerEngine

pytestmark = pytest.mark.e2e


def image_id(docker: DockerEngine, ref: str) -> str:
    return docker.run("image", "inspect", "--format", "{{.Id}}", ref).stdout.strip()


def repo_digests(docker: DockerEngine, ref: str) -> list[str]:
    out = docker.run("image", "inspect", "--format", "{{json .RepoDigests}}", ref).stdout
    digests: list[str] = json.loads(out)
    return digests


def manifest_digest(registry: Registry, repo: str, reference: str) -> str:
    request = urllib.request.Request(
        f"{registry.url}/v2/{repo}/manifests/{reference}",
        method="HEAD",
        headers={
            "Accept": "application/vnd.docker.distribution.manifest.v2+json, "
            "application/vnd.oci.image.manifest.v1+json"
        },
    )
    with loopback.open(request, timeout=10) as resp:
        digest: str = resp.headers["Docker-Content-Digest"]
        return digest


def test_push_remove_pull_same_image(
    docker_engine: DockerEngine, registry: Registry, tmp_path: Path
) -> None:
    docker = docker_engine
    ref = f"{registry.host}/e2e/img:1"
    tar = write_rootfs_tar(
        tmp_path / "rootfs.tar",
        {"etc/hello": b"hello from angos e2e\n", "bin/data": bytes(range(256)) * 64},
    )
    docker.run("import", str(tar), "angos-e2e-local:1")
    docker.run("tag", "angos-e2e-local:1", ref)
    pushed_id = image_id(docker, ref)

    push = docker.run("push", ref)
    assert "digest: sha256:" in push.stdout, push.stdout

    docker.run("image", "rm", ref, "angos-e2e-local:1")
    assert docker.run("image", "inspect", pushed_id, check=False).returncode != 0

    docker.run("pull", ref)
    assert image_id(docker, ref) == pushed_id
    # The digest docker recorded on pull is the one the registry serves for the tag.
    (digest_ref,) = (d for d in repo_digests(docker, ref) if d.startswith(registry.host))
    assert digest_ref.split("@", 1)[1] == manifest_digest(registry, "e2e/img", "1")


def test_two_layer_image_shares_base_layer_across_repositories(
    docker_engine: DockerEngine, registry: Registry, tmp_path: Path
) -> None:
    """The base layer reaches the second repository by cross-repository mount (docker tries
    it first, since it pushed that layer to ``e2e/base``); all survives a server restart."""
    docker = docker_engine
    base = f"{registry.host}/e2e/base:1"
    app = f"{registry.host}/e2e/app/nested:latest"
    tar = write_rootfs_tar(tmp_path / "rootfs.tar", {"etc/shared": b"shared layer\n" * 1000})
    docker.run("import", str(tar), base)
    docker.run("push", base)

    # The legacy builder: COPY and ENV need no running container, so no network either.
    context = tmp_path / "context"
    context.mkdir()
    (context / "app.txt").write_bytes(b"the app layer\n" * 500)
    (context / "Dockerfile").write_text(f"FROM {base}\nCOPY app.txt /srv/app.txt\nENV APP=1\n")
    docker.run("build", "--tag", app, str(context), env={"DOCKER_BUILDKIT": "0"})
    app_id = image_id(docker, app)
    layers = json.loads(
        docker.run("image", "inspect", "--format", "{{json .RootFS.Layers}}", app).stdout
    )
    assert len(layers) == 2
    docker.run("push", app)
    digest = manifest_digest(registry, "e2e/app/nested", "latest")

    if isinstance(registry, AngosServer):
        registry.restart()

    docker.run("image", "rm", app, base)
    assert docker.run("image", "inspect", app, check=False).returncode != 0
    by_digest = f"{registry.host}/e2e/app/nested@{digest}"
    docker.run("pull", by_digest)
    assert image_id(docker, by_digest) == app_id
    docker.run("image", "rm", by_digest)

"""End to end with the real Docker engine: import, push, remove, pull back, same image.

Images come from ``docker import`` of a tar written here: nothing is ever ``docker run``.
"""

from __future__ import annotations

import io
import json
import tarfile
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.e2e.conftest import Registry
    from tests.support.docker_engine import DockerEngine

pytestmark = pytest.mark.e2e


def write_rootfs_tar(path: Path, files: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            info.mtime = 1_700_000_000
            tar.addfile(info, io.BytesIO(data))
    return path


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
    with urllib.request.urlopen(request, timeout=10) as resp:
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
    docker.run("import", str(tar), ref)
    pushed_id = image_id(docker, ref)

    push = docker.run("push", ref)
    assert "digest: sha256:" in push.stdout, push.stdout

    docker.run("image", "rm", ref)
    assert docker.run("image", "inspect", ref, check=False).returncode != 0

    docker.run("pull", ref)
    assert image_id(docker, ref) == pushed_id
    # The digest docker recorded on pull is the one the registry serves for the tag.
    (digest_ref,) = (d for d in repo_digests(docker, ref) if d.startswith(registry.host))
    assert digest_ref.split("@", 1)[1] == manifest_digest(registry, "e2e/img", "1")


def test_push_to_second_repository_and_pull_by_digest(
    docker_engine: DockerEngine, registry: Registry, tmp_path: Path
) -> None:
    """A second repository gets the same layer (docker tries a cross-repository mount first)."""
    docker = docker_engine
    first = f"{registry.host}/e2e/base:1"
    second = f"{registry.host}/e2e/copy/nested:latest"
    tar = write_rootfs_tar(tmp_path / "rootfs.tar", {"etc/shared": b"shared layer\n" * 1000})
    docker.run("import", str(tar), first)
    pushed_id = image_id(docker, first)
    docker.run("push", first)
    docker.run("tag", first, second)
    docker.run("push", second)

    digest = manifest_digest(registry, "e2e/copy/nested", "latest")
    assert digest == manifest_digest(registry, "e2e/base", "1")

    docker.run("image", "rm", first, second)
    by_digest = f"{registry.host}/e2e/copy/nested@{digest}"
    docker.run("pull", by_digest)
    assert image_id(docker, by_digest) == pushed_id
    docker.run("image", "rm", by_digest)

"""End to end: containerd pulls through a pull-through namespace as a ``hosts.toml`` mirror.

An upstream Angos holds a two-platform index (pushed by skopeo); the cache Angos has
``[repository."docker.io"]`` with that upstream. containerd, told by ``hosts.toml`` that
``docker.io`` has the cache as a mirror, asks it for ``library/multi`` with ``?ns=docker.io``:
the cache fetches from the upstream, stores, and serves every blob containerd verifies.
Then the same pull with the upstream stopped: all from the cache. Docker pulls the
cache's prefixed name (``<cache>/docker.io/library/pt:1``), and its push there is refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.e2e.oci_images import run_skopeo, write_rootfs_tar
from tests.support.angos_server import AngosServerFactory, fs_config
from tests.support.upstream_proxy import upstream_toml

if TYPE_CHECKING:
    from tests.e2e.oci_images import Source
    from tests.support.containerd_engine import ContainerdEngine
    from tests.support.docker_engine import DockerEngine

pytestmark = pytest.mark.e2e


def hosts_dir(root: Path, mirror_host: str) -> Path:
    """A ``certs.d`` tree making ``mirror_host`` (plain HTTP) docker.io's only pull host."""
    directory = root / "certs.d"
    (directory / "docker.io").mkdir(parents=True)
    (directory / "docker.io" / "hosts.toml").write_text(
        'server = "https://registry-1.docker.io"\n\n'
        f'[host."http://{mirror_host}"]\n  capabilities = ["pull", "resolve"]\n'
    )
    return directory


def test_containerd_pulls_through_a_hosts_toml_mirror(
    containerd_engine: ContainerdEngine,
    angos_server_factory: AngosServerFactory,
    skopeo: str,
    source: Source,
    tmp_path: Path,
) -> None:
    upstream = angos_server_factory(fs_config(tmp_path / "upstream-data"))
    run_skopeo(
        skopeo, "copy", "--all", "--preserve-digests", "--dest-tls-verify=false",
        f"oci:{source.oci.root}:multi", f"docker://{upstream.host}/library/multi:v1",
    )  # fmt: skip
    cache = angos_server_factory(
        fs_config(tmp_path / "cache-data") + upstream_toml("docker.io", upstream.url)
    )
    certs = hosts_dir(tmp_path, cache.host)
    ref = "docker.io/library/multi:v1"
    pull = ("images", "pull", "--hosts-dir", str(certs), "--all-platforms")
    containerd_engine.ctr(*pull, "--snapshotter", "native", ref)
    listed = containerd_engine.ctr("images", "ls").stdout
    assert source.index.digest in listed
    closure = {f"sha256:{h}" for h in source.oci.closure(source.index)}
    assert closure <= set(containerd_engine.ctr("content", "ls", "--quiet").stdout.split())

    # Everything is cached now: with the upstream gone, a fresh pull is served whole.
    upstream.stop()
    containerd_engine.ctr("images", "rm", ref)
    for digest in containerd_engine.ctr("content", "ls", "--quiet").stdout.split():
        containerd_engine.ctr("content", "rm", digest, check=False)
    containerd_engine.ctr(*pull, ref)
    assert source.index.digest in containerd_engine.ctr("images", "ls").stdout


def test_docker_pulls_through_the_cache(
    docker_engine: DockerEngine, angos_server_factory: AngosServerFactory, tmp_path: Path
) -> None:
    docker = docker_engine
    upstream = angos_server_factory(fs_config(tmp_path / "upstream-data"))
    tar = write_rootfs_tar(tmp_path / "rootfs.tar", {"etc/hello": b"through the cache\n"})
    docker.run("import", str(tar), "angos-e2e-pt:1")
    docker.run("tag", "angos-e2e-pt:1", f"{upstream.host}/library/pt:1")
    docker.run("push", f"{upstream.host}/library/pt:1")
    pushed = docker.run("image", "inspect", "--format", "{{.Id}}", "angos-e2e-pt:1").stdout
    docker.run("image", "rm", "angos-e2e-pt:1", f"{upstream.host}/library/pt:1")
    cache = angos_server_factory(
        fs_config(tmp_path / "cache-data") + upstream_toml("docker.io", upstream.url)
    )
    ref = f"{cache.host}/docker.io/library/pt:1"
    docker.run("pull", ref)
    assert docker.run("image", "inspect", "--format", "{{.Id}}", ref).stdout == pushed
    # Read-only: docker's push is refused with the cache's message.
    refused = docker.run("push", ref, check=False)
    assert refused.returncode != 0
    assert "pull-through cache" in refused.stdout + refused.stderr

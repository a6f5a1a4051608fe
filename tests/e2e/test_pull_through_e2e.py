"""End to end: containerd pulls through a pull-through namespace as a ``hosts.toml`` mirror.

An upstream Angos holds a two-platform index (pushed by skopeo); the cache Angos has
``[repository."docker.io"]`` with that upstream. containerd, told by ``hosts.toml`` that
``docker.io`` has the cache as a mirror, asks it for ``library/multi`` with ``?ns=docker.io``:
the cache fetches from the upstream, stores, and serves every blob containerd verifies.
A second containerd pulls the same image with the upstream stopped: all from the cache.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.e2e.oci_images import run_skopeo
from tests.support.angos_server import AngosServerFactory, fs_config
from tests.support.upstream_proxy import upstream_toml

if TYPE_CHECKING:
    from tests.e2e.oci_images import Source
    from tests.support.containerd_engine import ContainerdEngine

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

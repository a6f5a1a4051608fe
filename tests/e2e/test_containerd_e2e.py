"""End to end with containerd (``ctr``): pull a multi-platform index, push it to another repo.

skopeo puts a two-platform OCI index (written by hand, tests/e2e/oci_images.py) in the
registry; a private containerd pulls it with ``--all-platforms`` and unpacks both platforms,
then pushes it back under another repository, which must serve the same digests.

Unpacking uses the ``native`` snapshotter: plain directory copies, where ``overlayfs`` would
need overlay mounts that a container sandbox may not allow. Unpacking still checks each layer:
containerd compares the uncompressed layer's digest with the config's ``rootfs.diff_ids``.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import TYPE_CHECKING

import pytest

from tests.e2e.oci_images import OCI_INDEX, OCI_MANIFEST, get_manifest, run_skopeo
from tests.support.angos_server import loopback

if TYPE_CHECKING:
    from tests.e2e.conftest import Registry
    from tests.e2e.oci_images import Source
    from tests.support.containerd_engine import ContainerdEngine

pytestmark = pytest.mark.e2e


def blob_status(registry: Registry, repo: str, digest: str) -> int:
    request = urllib.request.Request(f"{registry.url}/v2/{repo}/blobs/{digest}", method="HEAD")
    try:
        with loopback.open(request, timeout=10) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def image_digest(containerd: ContainerdEngine, ref: str) -> str:
    """The target digest containerd's image record ``ref`` points at."""
    for line in containerd.ctr("images", "ls").stdout.splitlines()[1:]:
        name, _media_type, digest, *_ = line.split()
        if name == ref:
            return digest
    raise AssertionError(f"containerd has no image {ref}")


def test_pull_all_platforms_then_push_to_another_repository(
    containerd_engine: ContainerdEngine,
    registry: Registry,
    skopeo: str,
    source: Source,
) -> None:
    ctr = containerd_engine.ctr
    oci, index = source.oci, source.index
    ref = f"{registry.host}/e2e/multi:v1"
    run_skopeo(
        skopeo, "copy", "--all", "--preserve-digests", "--dest-tls-verify=false",
        f"oci:{oci.root}:multi", f"docker://{ref}",
    )  # fmt: skip

    ctr("images", "pull", "--plain-http", "--all-platforms", "--snapshotter", "native", ref)
    assert image_digest(containerd_engine, ref) == index.digest
    # Every blob came in (containerd verifies each digest as it commits the content) ...
    closure = {f"sha256:{h}" for h in oci.closure(index)}
    assert closure <= set(ctr("content", "ls", "--quiet").stdout.split())
    # ... and each platform's single layer unpacked to a snapshot named by its diff_id
    # (the chain id of a one-layer image), which containerd checked while unpacking.
    diff_ids = set()
    for child in source.children:
        manifest = json.loads(oci.root.joinpath("blobs", *child.digest.split(":")).read_bytes())
        config_path = oci.root.joinpath("blobs", *manifest["config"]["digest"].split(":"))
        diff_ids.update(json.loads(config_path.read_bytes())["rootfs"]["diff_ids"])
    assert len(diff_ids) == len(source.children)
    snapshots = ctr("snapshots", "--snapshotter", "native", "ls").stdout.splitlines()[1:]
    assert {line.split()[0] for line in snapshots} == diff_ids

    copy = f"{registry.host}/e2e/from-containerd/copy:v2"
    ctr("images", "tag", ref, copy)
    ctr("images", "push", "--plain-http", copy)

    served = get_manifest(registry.url, "e2e/from-containerd/copy", "v2", accept=OCI_INDEX)
    assert served.status == 200, served.body
    assert served.content_type == OCI_INDEX
    assert served.digest == served.body_digest == index.digest
    for child in source.children:
        served = get_manifest(registry.url, "e2e/from-containerd/copy", child.digest, OCI_MANIFEST)
        assert served.status == 200, served.body
        assert served.body_digest == child.digest
    blobs = closure - {index.digest, *(c.digest for c in source.children)}
    assert len(blobs) == 2 * len(source.children)  # a config and a layer per platform
    for digest in blobs:
        assert blob_status(registry, "e2e/from-containerd/copy", digest) == 200, digest

"""End to end with skopeo: a multi-platform index and a single image, to the registry and back.

The source is an OCI image layout written by hand (tests/e2e/oci_images.py), so the digests
that must survive the round trip are known before skopeo touches anything.
"""

from __future__ import annotations

import hashlib
import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.e2e.oci_images import OCI_INDEX, OCI_MANIFEST, PLATFORMS, read_layout_ref, run_skopeo
from tests.support.angos_server import loopback

if TYPE_CHECKING:
    from tests.e2e.conftest import Registry
    from tests.e2e.oci_images import Source

pytestmark = pytest.mark.e2e


def fetch_manifest(registry: Registry, repo: str, reference: str) -> tuple[int, bytes]:
    request = urllib.request.Request(
        f"{registry.url}/v2/{repo}/manifests/{reference}",
        headers={"Accept": f"{OCI_INDEX}, {OCI_MANIFEST}"},
    )
    try:
        with loopback.open(request, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_copy_multi_platform_index_round_trip(
    skopeo: str,
    registry: Registry,
    source: Source,
    tmp_path: Path,
) -> None:
    oci, index, images = source.oci, source.index, source.children
    remote = f"docker://{registry.host}/e2e/multi:v1"
    run_skopeo(
        skopeo, "copy", "--all", "--preserve-digests", "--dest-tls-verify=false",
        f"oci:{oci.root}:multi", remote,
    )  # fmt: skip

    # The registry serves the index byte for byte, and each child manifest by digest.
    status, body = fetch_manifest(registry, "e2e/multi", "v1")
    assert status == 200
    assert f"sha256:{hashlib.sha256(body).hexdigest()}" == index.digest
    for image in images:
        status, body = fetch_manifest(registry, "e2e/multi", image.digest)
        assert status == 200
        assert f"sha256:{hashlib.sha256(body).hexdigest()}" == image.digest

    back = tmp_path / "back"
    run_skopeo(
        skopeo, "copy", "--all", "--preserve-digests", "--src-tls-verify=false",
        remote, f"oci:{back}:multi",
    )  # fmt: skip
    assert read_layout_ref(back, "multi")["digest"] == index.digest
    # Every blob (index, manifests, configs, layers) came back with identical bytes.
    closure = oci.closure(index)
    assert len(closure) == 1 + 3 * len(PLATFORMS)  # the index; per platform manifest, config, layer
    for name in closure:
        copied = back / "blobs" / "sha256" / name
        assert copied.read_bytes() == (oci.root / "blobs" / "sha256" / name).read_bytes()


def test_copy_single_image_inspect_list_tags_delete(
    skopeo: str,
    registry: Registry,
    source: Source,
    tmp_path: Path,
) -> None:
    oci, index, single = source.oci, source.index, source.single
    repo = f"{registry.host}/e2e/single"
    for tag in ("1.0", "latest"):
        run_skopeo(
            skopeo, "copy", "--preserve-digests", "--dest-tls-verify=false",
            f"oci:{oci.root}:single", f"docker://{repo}:{tag}",
        )  # fmt: skip
    run_skopeo(
        skopeo, "copy", "--all", "--dest-tls-verify=false",
        f"oci:{oci.root}:multi", f"docker://{repo}:multi",
    )  # fmt: skip

    inspected = json.loads(
        run_skopeo(skopeo, "inspect", "--tls-verify=false", f"docker://{repo}:1.0").stdout
    )
    assert inspected["Digest"] == single.digest
    assert inspected["Architecture"] == "amd64"
    assert inspected["Os"] == "linux"
    assert inspected["Env"] == ["ARCH=amd64"]
    assert sorted(inspected["RepoTags"]) == ["1.0", "latest", "multi"]

    raw = run_skopeo(skopeo, "inspect", "--raw", "--tls-verify=false", f"docker://{repo}:multi")
    assert f"sha256:{hashlib.sha256(raw.stdout.encode()).hexdigest()}" == index.digest

    tags = json.loads(
        run_skopeo(skopeo, "list-tags", "--tls-verify=false", f"docker://{repo}").stdout
    )
    assert tags["Repository"] == repo
    assert sorted(tags["Tags"]) == ["1.0", "latest", "multi"]

    back = tmp_path / "single-back"
    run_skopeo(
        skopeo, "copy", "--preserve-digests", "--src-tls-verify=false",
        f"docker://{repo}:latest", f"oci:{back}:single",
    )  # fmt: skip
    assert read_layout_ref(back, "single")["digest"] == single.digest

    # Deleting by tag deletes the manifest that tag names: gone by digest and by both tags.
    run_skopeo(skopeo, "delete", "--tls-verify=false", f"docker://{repo}:1.0")
    for reference in (single.digest, "1.0", "latest"):
        status, body = fetch_manifest(registry, "e2e/single", reference)
        assert status == 404, (reference, body)
        assert json.loads(body)["errors"][0]["code"] == "MANIFEST_UNKNOWN"
    with pytest.raises(AssertionError):
        run_skopeo(skopeo, "inspect", "--tls-verify=false", f"docker://{repo}@{single.digest}")
    # The index under another tag is untouched.
    status, _ = fetch_manifest(registry, "e2e/single", "multi")
    assert status == 200
    tags = json.loads(
        run_skopeo(skopeo, "list-tags", "--tls-verify=false", f"docker://{repo}").stdout
    )
    assert tags["Tags"] == ["multi"]

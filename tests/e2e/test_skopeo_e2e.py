"""End to end with skopeo: a multi-platform index and a single image, to the registry and back.

The source is an OCI image layout written by hand here (blobs + index.json), so the digests
that must survive the round trip are known before skopeo touches anything.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import subprocess
import tarfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.support.angos_server import loopback
from tests.support.tools import require_tool

if TYPE_CHECKING:
    from tests.e2e.conftest import Registry

pytestmark = pytest.mark.e2e

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
PLATFORMS = [("linux", "amd64"), ("linux", "arm64")]


@dataclass
class Descriptor:
    media_type: str
    digest: str
    size: int

    def to_json(self, **extra: Any) -> dict[str, Any]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size, **extra}


class OciLayout:
    """Writes an OCI image layout directory: ``oci-layout``, ``blobs/sha256/*``, ``index.json``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "blobs" / "sha256").mkdir(parents=True)
        (root / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
        self.refs: list[dict[str, Any]] = []

    def blob(self, data: bytes, media_type: str) -> Descriptor:
        hexdigest = hashlib.sha256(data).hexdigest()
        (self.root / "blobs" / "sha256" / hexdigest).write_bytes(data)
        return Descriptor(media_type, f"sha256:{hexdigest}", len(data))

    def json_blob(self, doc: dict[str, Any], media_type: str) -> Descriptor:
        return self.blob(json.dumps(doc, indent=2).encode(), media_type)

    def image(self, os_name: str, arch: str, flavour: str = "") -> Descriptor:
        raw = io.BytesIO()
        with tarfile.open(fileobj=raw, mode="w") as tar:
            payload = f"built for {os_name}/{arch} {flavour}\n".encode() * 200
            info = tarfile.TarInfo(f"etc/{arch}.txt")
            info.size = len(payload)
            info.mtime = 1_700_000_000
            tar.addfile(info, io.BytesIO(payload))
        layer_tar = raw.getvalue()
        layer = self.blob(gzip.compress(layer_tar, mtime=0), OCI_LAYER_GZIP)
        config = self.json_blob(
            {
                "architecture": arch,
                "os": os_name,
                "config": {"Env": [f"ARCH={arch}"]},
                "rootfs": {
                    "type": "layers",
                    "diff_ids": [f"sha256:{hashlib.sha256(layer_tar).hexdigest()}"],
                },
                "history": [{"created_by": "angos e2e test"}],
            },
            OCI_CONFIG,
        )
        return self.json_blob(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": config.to_json(),
                "layers": [layer.to_json()],
                "annotations": {"org.opencontainers.image.title": f"angos-e2e-{arch}{flavour}"},
            },
            OCI_MANIFEST,
        )

    def index(self, manifests: list[tuple[Descriptor, str, str]]) -> Descriptor:
        return self.json_blob(
            {
                "schemaVersion": 2,
                "mediaType": OCI_INDEX,
                "manifests": [
                    d.to_json(platform={"os": os_name, "architecture": arch})
                    for d, os_name, arch in manifests
                ],
            },
            OCI_INDEX,
        )

    def closure(self, desc: Descriptor) -> set[str]:
        """Hex digests of ``desc`` and of every blob it references, recursively."""
        seen: set[str] = set()
        pending = [desc.digest]
        while pending:
            hexdigest = pending.pop().split(":", 1)[1]
            if hexdigest in seen:
                continue
            seen.add(hexdigest)
            data = (self.root / "blobs" / "sha256" / hexdigest).read_bytes()
            try:
                doc = json.loads(data)
            except (UnicodeDecodeError, json.JSONDecodeError):
                continue  # a layer
            if isinstance(doc, dict):
                refs = [*doc.get("manifests", []), *doc.get("layers", [])]
                if "digest" in doc.get("config", {}):
                    refs.append(doc["config"])
                pending.extend(r["digest"] for r in refs)
        return seen

    def tag(self, desc: Descriptor, name: str) -> None:
        self.refs.append(desc.to_json(annotations={"org.opencontainers.image.ref.name": name}))
        (self.root / "index.json").write_text(
            json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": self.refs})
        )


def read_layout_ref(root: Path, name: str) -> dict[str, Any]:
    """The descriptor ``index.json`` of a layout holds for ref name ``name``."""
    index = json.loads((root / "index.json").read_text())
    (desc,) = (
        m
        for m in index["manifests"]
        if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == name
    )
    return dict(desc)


@pytest.fixture
def skopeo() -> str:
    return require_tool("skopeo", "apt-get install skopeo (or run scripts/test)")


def run_skopeo(skopeo: str, *args: str) -> subprocess.CompletedProcess[str]:
    # --insecure-policy: no dependence on the machine's /etc/containers/policy.json.
    proc = subprocess.run(
        [skopeo, "--insecure-policy", *args],
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    if proc.returncode != 0:
        raise AssertionError(
            f"skopeo {' '.join(args)} exited {proc.returncode}\n"
            f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
        )
    return proc


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


@dataclass
class Source:
    oci: OciLayout
    index: Descriptor  # tag "multi": a two-platform index of ``children``
    children: list[Descriptor]
    single: Descriptor  # tag "single": an image outside the index


@pytest.fixture
def source(tmp_path: Path) -> Source:
    oci = OciLayout(tmp_path / "source")
    children = [oci.image(os_name, arch) for os_name, arch in PLATFORMS]
    index = oci.index([(img, o, a) for img, (o, a) in zip(children, PLATFORMS, strict=True)])
    oci.tag(index, "multi")
    single = oci.image("linux", "amd64", flavour="-single")
    oci.tag(single, "single")
    return Source(oci, index, children, single)


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

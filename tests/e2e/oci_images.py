"""Images the end-to-end tests copy: an OCI image layout written by hand, and skopeo.

The layout (blobs + index.json) is written here, so the digests that must survive a round
trip through the registry are known before any client touches them.
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
from typing import Any

from tests.support.angos_server import loopback
from tests.support.tools import run_tool

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
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


def run_skopeo(skopeo: str, *args: str) -> subprocess.CompletedProcess[str]:
    # --insecure-policy: no dependence on the machine's /etc/containers/policy.json.
    return run_tool([skopeo, "--insecure-policy", *args], shown=f"skopeo {' '.join(args)}")


@dataclass
class Source:
    oci: OciLayout
    index: Descriptor  # tag "multi": a two-platform index of ``children``
    children: list[Descriptor]
    single: Descriptor  # tag "single": an image outside the index


def build_source(root: Path) -> Source:
    """A layout at ``root`` with a two-platform index (tag ``multi``) and an image (``single``)."""
    oci = OciLayout(root)
    children = [oci.image(os_name, arch) for os_name, arch in PLATFORMS]
    index = oci.index([(img, o, a) for img, (o, a) in zip(children, PLATFORMS, strict=True)])
    oci.tag(index, "multi")
    single = oci.image("linux", "amd64", flavour="-single")
    oci.tag(single, "single")
    return Source(oci, index, children, single)


def write_rootfs_tar(path: Path, files: dict[str, bytes]) -> Path:
    """A plain tar of ``files`` (what ``docker import`` / ``podman import`` take)."""
    with tarfile.open(path, "w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            info.mtime = 1_700_000_000
            tar.addfile(info, io.BytesIO(data))
    return path


@dataclass
class Served:
    """A registry's answer to a manifest GET."""

    status: int
    content_type: str | None
    digest: str | None  # the Docker-Content-Digest header
    body: bytes

    @property
    def body_digest(self) -> str:
        return f"sha256:{hashlib.sha256(self.body).hexdigest()}"


def get_manifest(registry_url: str, repo: str, reference: str, accept: str) -> Served:
    """``GET /v2/<repo>/manifests/<reference>`` with ``Accept: accept``, errors included."""
    request = urllib.request.Request(
        f"{registry_url}/v2/{repo}/manifests/{reference}", headers={"Accept": accept}
    )
    try:
        with loopback.open(request, timeout=10) as resp:
            return Served(
                resp.status,
                resp.headers["Content-Type"],
                resp.headers["Docker-Content-Digest"],
                resp.read(),
            )
    except urllib.error.HTTPError as exc:
        return Served(exc.code, exc.headers["Content-Type"], None, exc.read())

"""End to end with ORAS: artifacts (not images) pushed and pulled by oras-py, and referrers.

oras-py (PyPI ``oras``, in the test extra) is the ORAS project's Python client; Debian has
no ``oras`` CLI. It gives an artifact its type the way ORAS did before image-spec 1.1, as the
config's media type; the 1.1 way, an ``artifactType`` field beside an empty config, is pushed
through the same client's blob and manifest uploads. oras-py has no referrers call, so the
referrers API is read with plain HTTP.
"""

from __future__ import annotations

import hashlib
import json
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import oras.oci
import oras.provider
import pytest

from tests.e2e.oci_images import OCI_INDEX, OCI_MANIFEST, get_manifest
from tests.support.angos_server import AngosServer, loopback

if TYPE_CHECKING:
    from tests.e2e.conftest import Registry

pytestmark = pytest.mark.e2e

REPO = "e2e/oras/bundle"
BUNDLE_TYPE = "application/vnd.angos.e2e.bundle.v1+json"
SIGNATURE_TYPE = "application/vnd.angos.e2e.signature.v1"
SBOM_TYPE = "application/vnd.angos.e2e.sbom.v1+json"
EMPTY_TYPE = "application/vnd.oci.empty.v1+json"


@pytest.fixture
def oras_client(registry: Registry) -> oras.provider.Registry:
    client = oras.provider.Registry(registry.host, insecure=True)
    # requests would send even 127.0.0.1 through an http_proxy from the environment.
    client.session.trust_env = False
    return client


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def sha256(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


@dataclass
class Pushed:
    digest: str
    manifest: bytes


def push_bundle(client: oras.provider.Registry, registry: Registry, tmp_path: Path) -> Pushed:
    """An artifact of type BUNDLE_TYPE with two files, the larger uploaded in chunks."""
    src = tmp_path / "src"
    src.mkdir()
    readme = write(src / "README.md", b"# angos e2e\nan artifact, not an image\n")
    # 320 KiB, uploaded as five 64 KiB PATCH requests.
    payload = b"".join(hashlib.sha256(bytes([i])).digest() * 40 for i in range(256))
    data = write(src / "data.bin", payload)
    config = write(src / "config.json", b'{"bundle": 1}')
    response = client.push(
        f"{registry.host}/{REPO}:v1",
        files=[f"{readme}:text/markdown", f"{data}:application/octet-stream"],
        manifest_config=f"{config}:{BUNDLE_TYPE}",
        manifest_annotations={"org.opencontainers.image.description": "angos e2e bundle"},
        disable_path_validation=True,
        do_chunked=True,
        chunk_size=64 * 1024,
        quiet=True,
    )
    assert response.status_code == 201, response.text
    served = get_manifest(registry.url, REPO, "v1", accept=OCI_MANIFEST)
    assert served.status == 200, served.body
    assert served.digest == served.body_digest == response.headers["Docker-Content-Digest"]
    return Pushed(served.body_digest, served.body)


def test_push_pull_artifact_byte_identical(
    oras_client: oras.provider.Registry, registry: Registry, tmp_path: Path
) -> None:
    bundle = push_bundle(oras_client, registry, tmp_path)
    manifest = json.loads(bundle.manifest)
    assert manifest["config"]["mediaType"] == BUNDLE_TYPE
    assert [layer["mediaType"] for layer in manifest["layers"]] == [
        "text/markdown",
        "application/octet-stream",
    ]
    assert oras_client.get_manifest(f"{registry.host}/{REPO}@{bundle.digest}") == manifest

    out = tmp_path / "out"
    pulled = oras_client.pull(f"{registry.host}/{REPO}:v1", outdir=str(out))
    assert sorted(Path(p).name for p in pulled) == ["README.md", "data.bin"]
    for name in ("README.md", "data.bin"):
        assert (out / name).read_bytes() == (tmp_path / "src" / name).read_bytes(), name
    config = oras_client.get_blob(f"{registry.host}/{REPO}", manifest["config"]["digest"])
    assert config.content == b'{"bundle": 1}'


def referrers(registry: Registry, digest: str, **query: str) -> tuple[dict[str, Any], str | None]:
    """``GET /v2/<REPO>/referrers/<digest>``: the index and its OCI-Filters-Applied header."""
    url = f"{registry.url}/v2/{REPO}/referrers/{digest}"
    if query:
        url += "?" + urllib.parse.urlencode(query)
    with loopback.open(url, timeout=10) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == OCI_INDEX
        index: dict[str, Any] = json.loads(resp.read())
        return index, resp.headers["OCI-Filters-Applied"]


def test_referrers_of_an_artifact(
    oras_client: oras.provider.Registry, registry: Registry, tmp_path: Path
) -> None:
    if not isinstance(registry, AngosServer):
        pytest.skip("CNCF Distribution 2.8 predates the referrers API")
    bundle = push_bundle(oras_client, registry, tmp_path)
    subject = oras.oci.Subject(OCI_MANIFEST, bundle.digest, len(bundle.manifest))
    signature = write(tmp_path / "bundle.sig", b"not really a signature")

    # Typed the pre-1.1 way: the config's media type is the artifact type.
    response = oras_client.push(
        f"{registry.host}/{REPO}:signature",
        files=[f"{signature}:application/octet-stream"],
        manifest_config=f"{tmp_path / 'absent'}:{SIGNATURE_TYPE}",  # no file: config `{}`
        manifest_annotations={"org.example.signed-by": "angos-e2e"},
        subject=subject,
        disable_path_validation=True,
        quiet=True,
    )
    assert response.status_code == 201, response.text
    assert response.headers["OCI-Subject"] == bundle.digest
    signature_digest = response.headers["Docker-Content-Digest"]

    # Typed the 1.1 way: an artifactType beside the empty config, through the same client.
    sbom = write(tmp_path / "sbom.json", b'{"packages": []}')
    empty = write(tmp_path / "empty.json", b"{}")
    container = oras_client.get_container(f"{registry.host}/{REPO}:sbom")
    layer = oras.oci.NewLayer(str(sbom), media_type=SBOM_TYPE)
    config = {"mediaType": EMPTY_TYPE, "digest": sha256(b"{}"), "size": 2}
    for path, descriptor in ((sbom, layer), (empty, config)):
        uploaded = oras_client.upload_blob(str(path), container, descriptor)
        assert uploaded.status_code in (200, 201), uploaded.text
    sbom_manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": SBOM_TYPE,
        "config": config,
        "layers": [layer],
        "subject": {"mediaType": OCI_MANIFEST, "digest": subject.digest, "size": subject.size},
    }
    response = oras_client.upload_manifest(sbom_manifest, container)
    assert response.status_code == 201, response.text
    sbom_digest = response.headers["Docker-Content-Digest"]

    index, filters = referrers(registry, bundle.digest)
    assert index["mediaType"] == OCI_INDEX
    assert filters is None
    by_digest = {d["digest"]: d for d in index["manifests"]}
    assert by_digest.keys() == {signature_digest, sbom_digest}
    assert by_digest[signature_digest]["artifactType"] == SIGNATURE_TYPE
    assert by_digest[signature_digest]["annotations"] == {"org.example.signed-by": "angos-e2e"}
    assert by_digest[sbom_digest]["artifactType"] == SBOM_TYPE
    for digest, descriptor in by_digest.items():
        served = get_manifest(registry.url, REPO, digest, accept=OCI_MANIFEST)
        assert descriptor["mediaType"] == OCI_MANIFEST
        assert descriptor["size"] == len(served.body)

    for artifact_type, digest in ((SIGNATURE_TYPE, signature_digest), (SBOM_TYPE, sbom_digest)):
        index, filters = referrers(registry, bundle.digest, artifactType=artifact_type)
        assert filters == "artifactType"
        assert [d["digest"] for d in index["manifests"]] == [digest]
    index, filters = referrers(registry, bundle.digest, artifactType="application/x-none")
    assert (index["manifests"], filters) == ([], "artifactType")
    # The referrers themselves have none.
    assert referrers(registry, sbom_digest)[0]["manifests"] == []

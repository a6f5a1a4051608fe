"""The manifest and layer media types the registry knows."""

from __future__ import annotations

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+json"
DOCKER_SCHEMA1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"

#: Manifests that reference a config and layers (blobs).
IMAGE_MANIFESTS = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
#: Manifests that reference other manifests.
INDEX_MANIFESTS = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})
#: What a client may push.
PUSHABLE = IMAGE_MANIFESTS | INDEX_MANIFESTS
#: What the registry may serve (a store written by Distribution can hold schema 1).
KNOWN_MANIFESTS = PUSHABLE | {DOCKER_SCHEMA1, DOCKER_SCHEMA1_SIGNED}

#: Layers whose bytes live elsewhere and need not be pushed (OCI non-distributable layers
#: are deprecated but still accepted, as Distribution does).
_FOREIGN_PREFIXES = (
    "application/vnd.oci.image.layer.nondistributable.",
    "application/vnd.docker.image.rootfs.foreign.",
)


def is_foreign_layer(media_type: str) -> bool:
    return media_type.startswith(_FOREIGN_PREFIXES)


def normalise_content_type(value: str | None) -> str:
    """The bare media type of a Content-Type header (parameters and case dropped)."""
    if not value:
        return ""
    return value.split(";", 1)[0].strip().lower()

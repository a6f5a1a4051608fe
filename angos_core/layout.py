"""The one key layout every backend uses, CNCF Distribution's below its ``docker/registry/``.

Keys are relative, ``/``-separated. The fs backends put them under ``root_dir``, the s3
backends under ``key_prefix``, so copying one tree onto the other is a complete migration,
and a store Distribution wrote can be served as is.

Every function takes already-validated names, tags, digests and upload ids
(:mod:`angos_core.oci`), so no key can hold ``..`` or start with ``/``.

Angos adds, beside Distribution's keys::

    v2/repositories/<name>/_referrers/<subject-alg>/<subject-hex>/<alg>/<hex>/link
"""

from __future__ import annotations

from angos_core.protocols import UploadRef

ROOT = "v2/"
REPOSITORIES = "v2/repositories/"


def _split(digest: str) -> tuple[str, str]:
    alg, _, hexpart = digest.partition(":")
    return alg, hexpart


def blob_data_key(digest: str) -> str:
    alg, hexpart = _split(digest)
    return f"v2/blobs/{alg}/{hexpart[:2]}/{hexpart}/data"


def blobs_prefix() -> str:
    return "v2/blobs/"


def repository_prefix(name: str) -> str:
    return f"{REPOSITORIES}{name}/"


def layer_link_key(name: str, digest: str) -> str:
    alg, hexpart = _split(digest)
    return f"{REPOSITORIES}{name}/_layers/{alg}/{hexpart}/link"


def layers_prefix(name: str) -> str:
    return f"{REPOSITORIES}{name}/_layers/"


def manifests_prefix(name: str) -> str:
    return f"{REPOSITORIES}{name}/_manifests/"


def revision_link_key(name: str, digest: str) -> str:
    alg, hexpart = _split(digest)
    return f"{REPOSITORIES}{name}/_manifests/revisions/{alg}/{hexpart}/link"


def revisions_prefix(name: str) -> str:
    return f"{REPOSITORIES}{name}/_manifests/revisions/"


def tags_prefix(name: str) -> str:
    return f"{REPOSITORIES}{name}/_manifests/tags/"


def tag_prefix(name: str, tag: str) -> str:
    return f"{REPOSITORIES}{name}/_manifests/tags/{tag}/"


def tag_current_key(name: str, tag: str) -> str:
    return f"{REPOSITORIES}{name}/_manifests/tags/{tag}/current/link"


def tag_index_key(name: str, tag: str, digest: str) -> str:
    alg, hexpart = _split(digest)
    return f"{REPOSITORIES}{name}/_manifests/tags/{tag}/index/{alg}/{hexpart}/link"


def referrers_prefix(name: str, subject: str) -> str:
    alg, hexpart = _split(subject)
    return f"{REPOSITORIES}{name}/_referrers/{alg}/{hexpart}/"


def referrer_link_key(name: str, subject: str, digest: str) -> str:
    alg, hexpart = _split(digest)
    return f"{referrers_prefix(name, subject)}{alg}/{hexpart}/link"


def upload_prefix(upload: UploadRef) -> str:
    return f"{REPOSITORIES}{upload.name}/_uploads/{upload.upload_id}/"


def upload_key(upload: UploadRef, part: str = "data") -> str:
    """A file of the upload session: ``data`` (the bytes), ``startedat``, or backend state."""
    return f"{upload_prefix(upload)}{part}"


def digest_from_blob_key(key: str) -> str | None:
    """The inverse of :func:`blob_data_key`, or None for a key that is not a blob's data."""
    parts = key.split("/")
    if len(parts) == 6 and parts[:2] == ["v2", "blobs"] and parts[5] == "data":
        return f"{parts[2]}:{parts[4]}"
    return None


def link_content(digest: str) -> bytes:
    """What a link file holds: the digest, as Distribution writes it."""
    return digest.encode()

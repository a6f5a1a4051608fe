"""The one key layout every backend uses, CNCF Distribution's below its ``docker/registry/``.

Keys are relative, ``/``-separated. The fs backends put them under ``root_dir``, the s3
backends under ``key_prefix``, so copying one tree onto the other is a complete migration,
and a store Distribution wrote can be served as is.

Every function takes already-validated names, tags, digests and upload ids
(:mod:`angos_core.oci`), so no key can hold ``..`` or start with ``/``.

Angos adds, beside Distribution's keys::

    v2/repositories/<name>/_referrers/<subject-alg>/<subject-hex>/<alg>/<hex>/link

one entry per manifest whose ``subject`` is that digest. The entry holds the referrer's
descriptor as JSON (:func:`referrer_entry_content`), so listing a subject's referrers reads
no manifest bodies; an entry written before Angos kept descriptors holds the digest, as
other links do, and is described from the manifest body (:func:`parse_referrer_entry`).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

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


def tag_index_prefix(name: str, tag: str) -> str:
    """Every manifest ``tag`` has pointed at, one ``<alg>/<hex>/link`` each."""
    return f"{tag_prefix(name, tag)}index/"


def tag_index_key(name: str, tag: str, digest: str) -> str:
    alg, hexpart = _split(digest)
    return f"{tag_index_prefix(name, tag)}{alg}/{hexpart}/link"


def referrers_prefix(name: str, subject: str) -> str:
    alg, hexpart = _split(subject)
    return f"{REPOSITORIES}{name}/_referrers/{alg}/{hexpart}/"


def referrer_link_key(name: str, subject: str, digest: str) -> str:
    alg, hexpart = _split(digest)
    return f"{referrers_prefix(name, subject)}{alg}/{hexpart}/link"


def referrer_entry_content(descriptor: dict[str, Any]) -> bytes:
    """What a referrer's entry holds: its descriptor (``mediaType``, ``digest``, ``size``,
    ``artifactType`` and ``annotations`` when it has them), as compact JSON."""
    return json.dumps(descriptor, separators=(",", ":"), sort_keys=True).encode()


def parse_referrer_entry(raw: bytes, digest: str) -> dict[str, Any] | None:
    """The descriptor a referrer entry holds, or None for an entry without one (the digest
    only, as entries written before the index hold) or one that does not name ``digest``."""
    if not raw.startswith(b"{"):
        return None
    try:
        descriptor = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    if not (
        isinstance(descriptor, dict)
        and descriptor.get("digest") == digest
        and isinstance(descriptor.get("mediaType"), str)
        and isinstance(descriptor.get("size"), int)
    ):
        return None
    return descriptor


#: Angos's record of when each manifest of a repository was last pushed and last pulled,
#: for the retention rules (``angos prune``): one small object per manifest, holding an
#: RFC 3339 time. Outside ``v2/repositories/`` so that no walk of a repository's tree (ours
#: or Distribution's) meets it; ``<name>/_pushed/`` cannot collide with a repository name,
#: whose components never start with ``_``.
RETENTION_PREFIX = "v2/_retention/"
PUSHED = "_pushed"
PULLED = "_pulled"


def manifest_time_key(name: str, kind: str, digest: str) -> str:
    """``kind`` is :data:`PUSHED` or :data:`PULLED`."""
    alg, hexpart = _split(digest)
    return f"{RETENTION_PREFIX}{name}/{kind}/{alg}/{hexpart}"


def time_content(when: datetime) -> bytes:
    return when.astimezone(UTC).isoformat(timespec="seconds").encode()


#: The directory of a repository that holds its upload sessions, one directory per id.
UPLOADS_DIR = "_uploads"


def is_reserved(component: str) -> bool:
    """True for a path component that can never be part of a repository name.

    The name grammar starts every component with ``[a-z0-9]``, so ``_layers``,
    ``_manifests``, ``_uploads``, ``_referrers`` and temporary ``.``-files are not names:
    a walk of ``v2/repositories/`` for repository names skips them.
    """
    return component.startswith(("_", "."))


def uploads_prefix(name: str) -> str:
    """The directory of every upload session of repository ``name``."""
    return f"{REPOSITORIES}{name}/{UPLOADS_DIR}/"


def upload_prefix(upload: UploadRef) -> str:
    return f"{uploads_prefix(upload.name)}{upload.upload_id}/"


def upload_key(upload: UploadRef, part: str = "data") -> str:
    """A file of the upload session: ``data`` (the bytes), ``startedat``, or backend state."""
    return f"{upload_prefix(upload)}{part}"


#: The part of an upload session that records when it started.
STARTED_AT = "startedat"


def started_at_content(when: datetime) -> bytes:
    """What ``startedat`` holds: RFC 3339 in UTC, to the second, as Distribution writes it."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ").encode()


def parse_started_at(raw: bytes) -> datetime | None:
    """The time in a ``startedat`` record (ours or Distribution's), or None if unreadable.

    A time without a zone is taken as UTC.
    """
    try:
        when = datetime.fromisoformat(raw.decode("ascii").strip())
    except (UnicodeDecodeError, ValueError):
        return None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def digest_from_blob_key(key: str) -> str | None:
    """The inverse of :func:`blob_data_key`, or None for a key that is not a blob's data."""
    parts = key.split("/")
    if len(parts) == 6 and parts[:2] == ["v2", "blobs"] and parts[5] == "data":
        return f"{parts[2]}:{parts[4]}"
    return None


#: Where a live migration records what the new side deleted (angos_core.migrate.live).
MIGRATION_TOMBSTONES = "v2/_migration/deleted/"


def migration_tombstone_key(key: str) -> str:
    """The tombstone of ``key``: deleted on the new side during a live migration, so neither
    a read-through nor a copy pass brings it back from the old side."""
    return MIGRATION_TOMBSTONES + key


def link_content(digest: str) -> bytes:
    """What a link file holds: the digest, as Distribution writes it."""
    return digest.encode()

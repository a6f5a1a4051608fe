"""The spec's grammars for repository names, tags and upload ids."""

from __future__ import annotations

import re
import uuid

from angos_core.errors import BlobUploadUnknown, NameInvalid, TagInvalid

# OCI distribution-spec: [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*
_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
# Always used with fullmatch: "$" would also match before a final "\n".
NAME_RE = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
TAG_RE = re.compile(r"[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}")
MAX_NAME_LENGTH = 255


def validate_name(name: str) -> str:
    # The grammar forbids "..", leading "/" and components starting with "_", so a valid
    # name can neither escape the store root nor collide with the layout's "_manifests" dirs.
    if not name or len(name) > MAX_NAME_LENGTH or not NAME_RE.fullmatch(name):
        raise NameInvalid(f"invalid repository name {name!r}", detail={"name": name})
    return name


def validate_tag(tag: str) -> str:
    if not TAG_RE.fullmatch(tag or ""):
        raise TagInvalid(f"invalid tag {tag!r}", detail={"tag": tag})
    return tag


def is_tag(value: str) -> bool:
    return bool(TAG_RE.fullmatch(value or ""))


def namespace_covers(namespace: str, repository: str) -> bool:
    """Whether ``[repository."<namespace>"]`` applies to ``repository``: a component-wise
    prefix, ``team`` covers ``team`` and ``team/app``, not ``teams``."""
    return repository == namespace or repository.startswith(namespace + "/")


def new_upload_id() -> str:
    return str(uuid.uuid4())


def validate_upload_id(upload_id: str) -> str:
    try:
        parsed = uuid.UUID(upload_id)
    except (ValueError, TypeError, AttributeError):
        raise BlobUploadUnknown(detail={"uuid": upload_id}) from None
    if str(parsed) != upload_id:
        raise BlobUploadUnknown(detail={"uuid": upload_id})
    return upload_id

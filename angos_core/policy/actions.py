"""Actions, as Angos in Rust names them: what an HTTP request asks for, and what a Docker
token's ``access`` claim grants.

:func:`policy_request` is the one mapping from a request (method, the route's name in
:mod:`angos_core.http.routes`, the matched path parameters, the query) to a
:class:`PolicyRequest`; :data:`TOKEN_SCOPES` is the one table of the token actions
(``pull``, ``push``, ``delete``, ``*``) each of these needs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from angos_core.auth.scope import CATALOG, DELETE, PULL, PUSH, allows
from angos_core.identity import Access

if TYPE_CHECKING:
    from multidict import MultiMapping

GET_API_VERSION = "get-api-version"
START_UPLOAD = "start-upload"
MOUNT_BLOB = "mount-blob"
UPDATE_UPLOAD = "update-upload"
COMPLETE_UPLOAD = "complete-upload"
GET_UPLOAD = "get-upload"
CANCEL_UPLOAD = "cancel-upload"
GET_BLOB = "get-blob"
DELETE_BLOB = "delete-blob"
PUT_MANIFEST = "put-manifest"
GET_MANIFEST = "get-manifest"
DELETE_MANIFEST = "delete-manifest"
GET_REFERRERS = "get-referrers"
LIST_CATALOG = "list-catalog"
LIST_TAGS = "list-tags"
GET_TOKEN = "get-token"
HEALTHZ = "healthz"
READYZ = "readyz"
METRICS = "metrics"

#: Every action, in the order ``angos policy check --table`` prints them.
ACTIONS: tuple[str, ...] = (
    GET_API_VERSION,
    START_UPLOAD,
    MOUNT_BLOB,
    UPDATE_UPLOAD,
    COMPLETE_UPLOAD,
    GET_UPLOAD,
    CANCEL_UPLOAD,
    GET_BLOB,
    DELETE_BLOB,
    PUT_MANIFEST,
    GET_MANIFEST,
    DELETE_MANIFEST,
    GET_REFERRERS,
    LIST_CATALOG,
    LIST_TAGS,
    GET_TOKEN,
    HEALTHZ,
    READYZ,
    METRICS,
)

#: Actions on one repository: ``request.namespace`` is set, the repository's policy applies.
REPOSITORY_ACTIONS: frozenset[str] = frozenset(
    {
        START_UPLOAD,
        MOUNT_BLOB,
        UPDATE_UPLOAD,
        COMPLETE_UPLOAD,
        GET_UPLOAD,
        CANCEL_UPLOAD,
        GET_BLOB,
        DELETE_BLOB,
        PUT_MANIFEST,
        GET_MANIFEST,
        DELETE_MANIFEST,
        GET_REFERRERS,
        LIST_TAGS,
    }
)

#: The one table of what a Docker token must hold for each action (its ``access`` claim,
#: :attr:`Identity.access`): these actions on the request's repository, as Distribution's
#: scopes ask. A push needs ``pull,push`` (Distribution asks for both); reading, the upload's
#: GET included, ``pull``; deleting, an upload's cancel included, ``delete``; ``*`` holds
#: every action. A mount also needs ``pull`` on its ``from``; ``list-catalog`` needs
#: ``registry:catalog:*``. Every other action needs no grant (:data:`UNGATED_ACTIONS`).
TOKEN_SCOPES: Mapping[str, frozenset[str]] = {
    **dict.fromkeys(
        (GET_BLOB, GET_MANIFEST, GET_REFERRERS, LIST_TAGS, GET_UPLOAD), frozenset({PULL})
    ),
    **dict.fromkeys(
        (START_UPLOAD, MOUNT_BLOB, UPDATE_UPLOAD, COMPLETE_UPLOAD, PUT_MANIFEST),
        frozenset({PULL, PUSH}),
    ),
    **dict.fromkeys((CANCEL_UPLOAD, DELETE_BLOB, DELETE_MANIFEST), frozenset({DELETE})),
}

#: Actions no token grant is needed for (a token restricts what it names: repositories and
#: the catalog); the access policy still decides them.
UNGATED_ACTIONS: frozenset[str] = frozenset({GET_API_VERSION, GET_TOKEN, HEALTHZ, READYZ, METRICS})


@dataclass(frozen=True, slots=True)
class PolicyRequest:
    """What a request asks for, as the rules see it (``request.*``).

    ``None`` fields are absent from ``request`` (``has(request.from)`` is false), not null.
    ``tags`` is set (possibly empty) for ``put-manifest`` only; ``from_`` is ``request.from``.
    """

    action: str
    namespace: str | None = None
    digest: str | None = None
    reference: str | None = None
    tags: tuple[str, ...] | None = None
    from_: str | None = None
    uuid: str | None = None

    def variables(self) -> dict[str, object]:
        fields: dict[str, object] = {"action": self.action}
        for key, value in (
            ("namespace", self.namespace),
            ("digest", self.digest),
            ("reference", self.reference),
            ("from", self.from_),
            ("uuid", self.uuid),
        ):
            if value is not None:
                fields[key] = value
        if self.tags is not None:
            fields["tags"] = list(self.tags)
        return fields


def _is_digest(reference: str) -> bool:
    # A tag's grammar has no ":", a digest always has one; validity is the handler's job.
    return ":" in reference


def policy_request(
    method: str, route: str | None, match_info: Mapping[str, str], query: MultiMapping[str]
) -> PolicyRequest | None:
    """The action a request asks for; None for a route or method that is none of them (the
    router answers 404 or 405). ``route`` is the route's name in angos_core.http.routes
    (``manifest``, ``blob``, ``uploads``, ...); HEAD is GET's action."""
    method = "GET" if method.upper() == "HEAD" else method.upper()
    name = match_info.get("name")
    action = _SIMPLE.get((route, method))
    if action is not None:
        namespace = name if action in REPOSITORY_ACTIONS else None
        return PolicyRequest(action, namespace)
    if route == "referrers" and method == "GET":
        return PolicyRequest(GET_REFERRERS, name, digest=match_info.get("digest"))
    if route == "blob" and method in ("GET", "DELETE"):
        action = GET_BLOB if method == "GET" else DELETE_BLOB
        return PolicyRequest(action, name, digest=match_info.get("digest"))
    if route == "manifest":
        reference = match_info.get("reference", "")
        if method == "PUT":
            extra = tuple(query.getall("tag", []))
            if _is_digest(reference):
                return PolicyRequest(PUT_MANIFEST, name, digest=reference, tags=extra)
            return PolicyRequest(PUT_MANIFEST, name, tags=(reference, *extra))
        if method in ("GET", "DELETE"):
            action = GET_MANIFEST if method == "GET" else DELETE_MANIFEST
            return PolicyRequest(action, name, reference=reference)
    if route in ("uploads", "uploads-bare") and method == "POST":
        mount, source = query.get("mount"), query.get("from")
        if mount and source:
            return PolicyRequest(MOUNT_BLOB, name, digest=mount, from_=source)
        return PolicyRequest(START_UPLOAD, name, digest=query.get("digest") or None)
    if route == "upload":
        uuid = match_info.get("uuid")
        if method == "PUT":
            return PolicyRequest(
                COMPLETE_UPLOAD, name, digest=query.get("digest") or None, uuid=uuid
            )
        action = _UPLOAD.get(method)
        if action is not None:
            return PolicyRequest(action, name, uuid=uuid)
    return None


_SIMPLE: Mapping[tuple[str | None, str], str] = {
    ("base", "GET"): GET_API_VERSION,
    ("base-bare", "GET"): GET_API_VERSION,
    ("catalog", "GET"): LIST_CATALOG,
    ("tags", "GET"): LIST_TAGS,
    ("token", "GET"): GET_TOKEN,
    ("token", "POST"): GET_TOKEN,
    ("token-post", "POST"): GET_TOKEN,
    ("healthz", "GET"): HEALTHZ,
    ("readyz", "GET"): READYZ,
    ("metrics", "GET"): METRICS,
}

_UPLOAD: Mapping[str, str] = {"GET": GET_UPLOAD, "PATCH": UPDATE_UPLOAD, "DELETE": CANCEL_UPLOAD}


def token_permits(access: Sequence[Access], request: PolicyRequest) -> bool:
    """Whether a token's ``access`` claim covers ``request`` (:data:`TOKEN_SCOPES`)."""
    if request.action == LIST_CATALOG:
        return allows(access, CATALOG)
    needed = TOKEN_SCOPES.get(request.action)
    if needed is None:
        return request.action in UNGATED_ACTIONS
    if request.namespace is None:
        return False
    if not allows(access, Access("repository", request.namespace, needed)):
        return False
    source = request.from_
    if request.action == MOUNT_BLOB and source is not None and source != request.namespace:
        return allows(access, Access("repository", source, frozenset({PULL})))
    return True

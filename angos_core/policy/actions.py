"""Actions, as Angos in Rust names them: what an HTTP request asks for, and what a Docker
token's ``access`` claim grants.

:func:`policy_request` is the one mapping from a request (method, the route's name in
:mod:`angos_core.http.routes`, the matched path parameters, the query) to a
:class:`PolicyRequest`; :data:`DOCKER_ACTIONS` is the one table from a token's actions
(``pull``, ``push``, ``delete``, ``*``) to these actions.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

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

#: What a Docker token's repository actions grant. ``push`` covers the whole upload; a
#: token server grants ``pull,push`` for a push, as Distribution asks. The scope a
#: challenge asks for follows the HTTP method (angos_core.auth.scope: GET is ``pull``,
#: DELETE ``delete``), so the upload's GET and DELETE are granted by those too.
DOCKER_ACTIONS: Mapping[str, frozenset[str]] = {
    "pull": frozenset({GET_BLOB, GET_MANIFEST, GET_REFERRERS, LIST_TAGS, GET_UPLOAD}),
    "push": frozenset(
        {
            START_UPLOAD,
            MOUNT_BLOB,
            UPDATE_UPLOAD,
            COMPLETE_UPLOAD,
            GET_UPLOAD,
            CANCEL_UPLOAD,
            PUT_MANIFEST,
        }
    ),
    "delete": frozenset({DELETE_BLOB, DELETE_MANIFEST, CANCEL_UPLOAD}),
    "*": REPOSITORY_ACTIONS,
}

#: ``registry:catalog:*`` grants the catalog.
CATALOG_RESOURCE = ("registry", "catalog")

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


def granted_actions(access: Iterable[Access], namespace: str | None) -> frozenset[str]:
    """The actions a token's ``access`` grants on ``namespace`` (None: not a repository),
    the catalog included when granted."""
    actions: set[str] = set()
    for entry in access:
        if entry.type == "repository" and namespace is not None and entry.name == namespace:
            for docker_action in entry.actions:
                actions |= DOCKER_ACTIONS.get(docker_action, frozenset())
        elif (entry.type, entry.name) == CATALOG_RESOURCE and entry.actions:
            actions.add(LIST_CATALOG)
    return frozenset(actions)


def token_permits(access: Iterable[Access], request: PolicyRequest) -> bool:
    """Whether a token's ``access`` claim lets it ask for ``request`` at all."""
    if request.action in UNGATED_ACTIONS:
        return True
    return request.action in granted_actions(access, request.namespace)

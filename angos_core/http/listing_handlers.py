"""/v2/, tags list, catalog and referrers."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from angos_core.http.context import registry
from angos_core.http.policy import visible_repositories
from angos_core.oci import mediatypes as mt
from angos_core.registry.catalog import DEFAULT_CATALOG_PAGE, page_size
from angos_core.registry.referrers import DEFAULT_REFERRERS_PAGE


def _json(
    data: Any, headers: dict[str, str] | None = None, content_type: str = "application/json"
) -> web.Response:
    return web.Response(body=json.dumps(data).encode(), content_type=content_type, headers=headers)


def _next_link(path: str, n: int, last: str, **query: str) -> dict[str, str]:
    return {"Link": f'<{path}?{urlencode({"n": n, "last": last, **query})}>; rel="next"'}


async def base(request: web.Request) -> web.StreamResponse:
    return _json({})


async def tags_list(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    n = page_size(request.query.get("n"), None)
    tags, more = await registry(request).catalog.tags(name, n, request.query.get("last"))
    headers = _next_link(request.path, n, tags[-1]) if more and n and tags else None
    return _json({"name": name, "tags": tags}, headers)


async def catalog(request: web.Request) -> web.StreamResponse:
    n = page_size(request.query.get("n"), DEFAULT_CATALOG_PAGE)
    names, more = await registry(request).catalog.catalog(n, request.query.get("last"))
    # The next page starts after the last name read, shown or not.
    headers = _next_link(request.path, n, names[-1]) if more and n and names else None
    return _json({"repositories": await visible_repositories(request, names)}, headers)


async def referrers(request: web.Request) -> web.StreamResponse:
    artifact_type = request.query.get("artifactType") or None
    asked = page_size(request.query.get("n"), None)
    n = DEFAULT_REFERRERS_PAGE if asked is None else asked
    page = await registry(request).referrers.list(
        request.match_info["name"],
        request.match_info["digest"],
        artifact_type,
        n,
        request.query.get("last") or None,
    )
    headers: dict[str, str] = {}
    if artifact_type:
        headers["OCI-Filters-Applied"] = "artifactType"
    if page.next_last is not None:
        query = {"artifactType": artifact_type} if artifact_type else {}
        headers |= _next_link(request.path, n, page.next_last, **query)
    return _json(page.index, headers or None, content_type=mt.OCI_INDEX)

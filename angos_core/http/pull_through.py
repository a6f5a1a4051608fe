"""What the HTTP layer does for pull-through namespaces before auth and policy run.

- containerd's mirror query: a ``hosts.toml`` mirror sends ``GET /v2/library/alpine/...
  ?ns=docker.io``; when ``docker.io`` is a pull-through namespace, the request is for the
  repository ``docker.io/library/alpine``, and auth, policy and the handler see that name.
- writes (push, delete, mount into it) to a cached namespace are refused: ``DENIED`` (403),
  naming the upstream. Its content is the upstream's.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from angos_core.errors import Denied
from angos_core.http.context import registry

_READS = frozenset({"GET", "HEAD"})


@web.middleware
async def pull_through_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    name = request.match_info.get("name")
    if name is not None:
        cached = registry(request).pull_through
        ns = request.query.get("ns")
        if ns and ns in cached.namespaces:
            name = request.match_info["name"] = f"{ns}/{name}"
        if request.method not in _READS:
            namespace = cached.covers(name)
            if namespace is not None:
                raise Denied(
                    f"{name} is in {namespace.namespace}, a pull-through cache of "
                    f"{namespace.label}: it is read-only",
                    detail={"name": name},
                )
    response: web.StreamResponse = await handler(request)
    return response

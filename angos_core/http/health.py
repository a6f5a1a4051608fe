"""``GET /healthz`` (the process answers) and ``GET /readyz`` (every backend answers).

Both are unauthenticated and cheap. ``/readyz`` calls ``health()`` of the four configured
backends through their wrappers (so the calls show in the backend metrics), concurrently,
each bounded by ``[server] health_timeout_secs``; it answers 503 naming the failing backends,
and 503 as soon as a graceful shutdown has begun so load balancers stop sending traffic.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiohttp import web

from angos_core.http.context import REGISTRY, shutting_down
from angos_core.logs import redact

HEALTH_TIMEOUT: web.AppKey[float] = web.AppKey("angos_health_timeout", float)


async def healthz(request: web.Request) -> web.StreamResponse:
    return web.json_response({"status": "ok"})


async def _check(backend: Any, limit_secs: float) -> dict[str, Any]:
    start = time.perf_counter()
    entry: dict[str, Any] = {"name": backend.name}
    try:
        async with asyncio.timeout(limit_secs):
            await backend.health()
    except TimeoutError:
        entry.update(ok=False, error=f"no answer within {limit_secs:g}s")
    except Exception as exc:
        entry.update(ok=False, error=redact(str(exc)) or type(exc).__name__)
    else:
        entry["ok"] = True
    entry["seconds"] = round(time.perf_counter() - start, 4)
    return entry


async def readyz(request: web.Request) -> web.StreamResponse:
    app = request.app
    if shutting_down(app):
        return web.json_response({"status": "shutting down", "backends": {}}, status=503)
    registry = app.get(REGISTRY)
    if registry is None:
        return web.json_response({"status": "starting", "backends": {}}, status=503)
    kinds = registry.backends()
    timeout = app.get(HEALTH_TIMEOUT, 2.0)
    results = await asyncio.gather(*(_check(b, timeout) for b in kinds.values()))
    backends = dict(zip(kinds, results, strict=True))
    failing = [kind for kind, entry in backends.items() if not entry["ok"]]
    body: dict[str, Any] = {"status": "ready" if not failing else "unavailable"}
    if failing:
        body["failing"] = [f"{kind} ({backends[kind]['name']})" for kind in failing]
    body["backends"] = backends
    return web.json_response(body, status=503 if failing else 200)


def add_health_routes(app: web.Application, timeout: float) -> None:
    app[HEALTH_TIMEOUT] = timeout
    app.router.add_get("/healthz", healthz, name="healthz")
    app.router.add_get("/readyz", readyz, name="readyz")

"""``GET /healthz`` (the process answers) and ``GET /readyz`` (the registry can serve).

Both are unauthenticated and cheap. ``/readyz`` calls ``health()`` of the configured
storage backends through their wrappers (so the calls show in the backend metrics),
concurrently, each bounded by ``[server] health_timeout_secs``, and answers two questions,
each kind counting as its declaration's ``readiness`` says (:mod:`angos_core.kinds`):

* ``GET /readyz``: can this process serve reads? 200 while the ``read`` kinds (the blob
  store and the metadata store) answer, even read-only (a full disk or a read-only mount
  still serves every pull).
* ``GET /readyz?write=1``: can it also accept pushes and deletes? 200 only if the ``read``
  kinds are writable and the ``write`` kinds (the lock provider) answer.

In a live migration (``[migration] from``) the old blob and metadata stores are checked
too, as ``migration.blob_store`` and ``migration.metadata_store``: reads of what is not
copied yet go through to them, so both answers need them readable (never writable: writes
go to the new stores only).

An ``advisory`` kind (the cache: core treats a cache failure as a miss) fails neither. The
body lists every checked backend's read and write state. Both answer 503 once a graceful
shutdown has begun, so load balancers stop sending traffic.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from aiohttp import web

from angos_core.errors import BackendError, BackendReadOnly
from angos_core.http.context import REGISTRY, shutting_down
from angos_core.logs import redact

log = logging.getLogger("angos.http")

HEALTH_TIMEOUT: web.AppKey[float] = web.AppKey("angos_health_timeout", float)

#: The readiness values each answer needs (``ExtensionKind.readiness``).
NEEDED_FOR_READ = ("read",)
NEEDED_FOR_WRITE = ("read", "write")
#: A live migration's old stores (``migration.blob_store``, ``migration.metadata_store``):
#: needed readable for both answers, never writable.
READ_ONLY_NEEDED = "read-through"

_TRUE = ("1", "true", "yes")
_FALSE = ("", "0", "false", "no")


async def healthz(request: web.Request) -> web.StreamResponse:
    return web.json_response({"status": "ok"})


async def _check(backend: Any, limit_secs: float) -> dict[str, Any]:
    start = time.perf_counter()
    entry: dict[str, Any] = {"name": backend.name}
    try:
        async with asyncio.timeout(limit_secs):
            await backend.health()
    except TimeoutError:
        entry.update(ok=False, read=False, write=False)
        entry["error"] = f"no answer within {limit_secs:g}s"
    except BackendError as exc:
        # The body says what failed; where on disk (``log_detail``) goes to the log only.
        log.warning("readyz: %s", exc)
        entry.update(ok=False, read=isinstance(exc, BackendReadOnly), write=False)
        entry["error"] = redact(f"{exc.backend}: {exc.message}")
    except Exception as exc:
        entry.update(ok=False, read=False, write=False)
        entry["error"] = redact(str(exc)) or type(exc).__name__
    else:
        entry.update(ok=True, read=True, write=True)
    entry["seconds"] = round(time.perf_counter() - start, 4)
    return entry


def _status(can_read: bool, can_write: bool, all_ok: bool) -> str:
    if not can_read:
        return "unavailable"
    if not can_write:
        return "read-only"
    return "ready" if all_ok else "degraded"


async def readyz(request: web.Request) -> web.StreamResponse:
    app = request.app
    asked = request.query.get("write", "").lower()
    if asked not in _TRUE + _FALSE:
        return web.json_response(
            {"status": "bad request", "error": "write must be 1 or 0"}, status=400
        )
    want_write = asked in _TRUE
    if shutting_down(app):
        return web.json_response({"status": "shutting down", "backends": {}}, status=503)
    registry = app.get(REGISTRY)
    if registry is None:
        return web.json_response({"status": "starting", "backends": {}}, status=503)
    checked: dict[str, tuple[str, Any]] = {
        name: (kind.readiness, backend)
        for name, (kind, backend) in registry.backends().items()
        if kind.readiness is not None
    }
    # A live migration's old stores: reads of what is not copied yet go through to them,
    # so they count for reading; writes never go there, so read-only is enough.
    for name, (_, backend) in registry.migration_backends().items():
        checked[name] = (READ_ONLY_NEEDED, backend)
    timeout = app.get(HEALTH_TIMEOUT, 2.0)
    results = await asyncio.gather(*(_check(b, timeout) for _, b in checked.values()))
    backends = dict(zip(checked, results, strict=True))
    can_read = all(
        backends[name]["read"]
        for name, (need, _) in checked.items()
        if need in NEEDED_FOR_READ or need == READ_ONLY_NEEDED
    )
    can_write = can_read and all(
        backends[name]["write"] for name, (need, _) in checked.items() if need in NEEDED_FOR_WRITE
    )
    failing = [kind for kind, entry in backends.items() if not entry["ok"]]
    body: dict[str, Any] = {
        "status": _status(can_read, can_write, not failing),
        "read": can_read,
        "write": can_write,
    }
    if failing:
        body["failing"] = [f"{kind} ({backends[kind]['name']})" for kind in failing]
    body["backends"] = backends
    ready = can_write if want_write else can_read
    return web.json_response(body, status=200 if ready else 503)


def add_health_routes(app: web.Application, timeout: float) -> None:
    app[HEALTH_TIMEOUT] = timeout
    app.router.add_get("/healthz", healthz, name="healthz")
    app.router.add_get("/readyz", readyz, name="readyz")

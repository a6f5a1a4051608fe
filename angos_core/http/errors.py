"""Every error leaves as the spec's JSON body: ``{"errors": [{"code", "message", "detail"}]}``."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from angos_core.errors import (
    BackendError,
    LockLost,
    LockUnavailable,
    RangeNotSatisfiable,
    RegistryError,
    TooManyRequests,
)
from angos_core.http.streams import BodyStalled, ClientGone
from angos_core.registry.uploads import ChunkOutOfOrder

log = logging.getLogger("angos.http")


def error_response(
    status: int,
    code: str,
    message: str,
    detail: Any = None,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    body = {"errors": [{"code": code, "message": message, "detail": detail}]}
    return web.Response(
        status=status,
        body=json.dumps(body).encode(),
        content_type="application/json",
        charset="utf-8",
        headers=headers,
    )


def _registry_error(request: web.Request, exc: RegistryError) -> web.Response:
    headers: dict[str, str] = {}
    if isinstance(exc, ChunkOutOfOrder):
        up = exc.upload
        headers["Location"] = f"/v2/{up.name}/blobs/uploads/{up.upload_id}"
        headers["Range"] = f"0-{max(exc.size - 1, 0)}"
        headers["Docker-Upload-UUID"] = up.upload_id
    elif isinstance(exc, RangeNotSatisfiable) and isinstance(exc.detail, dict):
        headers["Content-Range"] = f"bytes */{exc.detail.get('size', '*')}"
    elif isinstance(exc, TooManyRequests):
        headers["Retry-After"] = str(exc.retry_after_secs)
    return error_response(exc.status, exc.code, exc.message, exc.detail, headers)


_HTTP_CODES = {404: "UNSUPPORTED", 405: "UNSUPPORTED", 413: "SIZE_INVALID"}


@web.middleware
async def error_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        response: web.StreamResponse = await handler(request)
        return response
    except RegistryError as exc:
        return _registry_error(request, exc)
    except (LockUnavailable, LockLost) as exc:
        log.warning("%s %s: %s", request.method, request.path, exc)
        return error_response(
            503,
            "UNAVAILABLE",
            f"repository is busy: the lock could not be held ({exc.backend}), retry later",
            {"backend": exc.backend},
            {"Retry-After": "1"},
        )
    except BackendError as exc:
        log.warning("%s %s: backend failure: %s", request.method, request.path, exc)
        return error_response(
            503,
            "UNAVAILABLE",
            f"storage backend {exc.backend!r} is unavailable: {exc.message}",
            {"backend": exc.backend},
            {"Retry-After": "1"},
        )
    except ClientGone as exc:
        # Usually nobody is left to read this; what was appended stays (resumable).
        log.info("%s %s: %s", request.method, request.path, exc)
        if isinstance(exc, BodyStalled):
            response = error_response(408, "BLOB_UPLOAD_INVALID", str(exc))
            response.force_close()
            return response
        return error_response(400, "BLOB_UPLOAD_INVALID", str(exc))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = _HTTP_CODES.get(exc.status, "UNSUPPORTED" if exc.status < 500 else "UNKNOWN")
        message = (
            "no such endpoint: see the OCI distribution spec" if exc.status == 404 else exc.reason
        )
        headers = {k: v for k, v in exc.headers.items() if k.lower() == "allow"}
        return error_response(exc.status, code, message, {"path": request.path}, headers)
    except (ConnectionError, TimeoutError) as exc:
        # The client went away mid-body; nobody is listening for an answer.
        log.info("%s %s: client connection lost: %r", request.method, request.path, exc)
        raise
    except Exception:
        log.exception("%s %s: unexpected error", request.method, request.path)
        return error_response(500, "UNKNOWN", "internal server error")

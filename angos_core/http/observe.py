"""Per-request observation: the request id, in-flight gauges, the access log and the request
metrics.

The access log line and the request metrics are written by :class:`AccessLogger`, which
aiohttp calls once the response has been completely written (or the client went away), so
the duration and byte counts cover the whole transfer, ``sendfile`` included. It is
installed through the application's ``handler_args``, so every runner (``angos serve``,
aiohttp's test server) uses it.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import re
import secrets
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.web_request import BaseRequest

from angos_core.http.aiohttp_compat import match_info_if_routed, rejected_by_parser
from angos_core.http.context import IDENTITY, shutting_down
from angos_core.http.metrics import METRICS, Metrics
from angos_core.logs import REDACTED, escape_field, request_id_var

access_log = logging.getLogger("angos.access")

REQUEST_ID_HEADER = "X-Request-ID"
_REQUEST_ID: web.RequestKey[str] = web.RequestKey("angos_request_id", str)
_SANE_ID = re.compile(r"[A-Za-z0-9._:+=/-]{1,128}")  # fullmatch: no trailing "\n"

#: Probe and scrape endpoints: not in the request metrics, access-logged at debug level only.
OPS_ROUTES = frozenset({"/healthz", "/readyz", "/metrics"})
UNMATCHED = "unmatched"

#: The tasks of the requests being handled (a graceful shutdown waits for them). A task
#: ends after its response is written, so a file still being sent counts as in flight.
REQUEST_TASKS: web.AppKey[set[asyncio.Task[Any]]] = web.AppKey("angos_request_tasks", set)

_SECRET_PARAM = re.compile(r"(signature|sig|token|credential|secret|password)", re.I)


#: Generated ids: 16 random hex digits per process, then a 16-digit counter (32 hex digits
#: in all, unique without a system call per request).
_ID_PREFIX = secrets.token_hex(8)
_ID_COUNTER = itertools.count(1)


def new_request_id() -> str:
    return f"{_ID_PREFIX}{next(_ID_COUNTER):016x}"


def request_id(request: BaseRequest) -> str:
    """The request's id: the client's ``X-Request-ID`` if sane, else a new one."""
    rid = request.get(_REQUEST_ID)
    if isinstance(rid, str):
        return rid
    incoming = request.headers.get(REQUEST_ID_HEADER, "")
    rid = incoming if incoming and _SANE_ID.fullmatch(incoming) else new_request_id()
    request[_REQUEST_ID] = rid
    return rid


def route_template(request: BaseRequest) -> str:
    """The matched route's template (bounded label), or ``unmatched``."""
    match_info = match_info_if_routed(request)
    route = getattr(match_info, "route", None)
    resource = getattr(route, "resource", None)
    if resource is None:
        return UNMATCHED
    canonical: str = resource.canonical
    return canonical


def _is_upload(request: web.Request, route: str) -> bool:
    return "/blobs/uploads" in route and request.method in ("POST", "PATCH", "PUT")


def _query_for_log(request: BaseRequest) -> str:
    if not request.query_string:
        return ""
    parts = []
    for key, value in request.query.items():
        parts.append(f"{key}={REDACTED if _SECRET_PARAM.search(key) else value}")
    return "&".join(parts)


@web.middleware
async def observe_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    """Outermost middleware: fixes the request id for every log line of the request and keeps
    the in-flight gauges."""
    rid = request_id(request)
    token = request_id_var.set(rid)
    tasks = request.app.get(REQUEST_TASKS)
    task = asyncio.current_task()
    if tasks is not None and task is not None and task not in tasks:
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    route = route_template(request)
    metrics = request.app.get(METRICS)
    counted = metrics is not None and route not in OPS_ROUTES
    upload = counted and _is_upload(request, route)
    if counted:
        assert metrics is not None
        metrics.in_flight.inc()
        if upload:
            metrics.uploads_in_progress.inc()
    try:
        response: web.StreamResponse = await handler(request)
        if shutting_down(request.app):
            # Shutting down: this connection closes after its response.
            response.force_close()
        return response
    finally:
        if counted:
            assert metrics is not None
            metrics.in_flight.dec()
            if upload:
                metrics.uploads_in_progress.dec()
        request_id_var.reset(token)


async def add_request_id_header(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare``: every response, streamed ones too, carries the id."""
    response.headers[REQUEST_ID_HEADER] = request_id(request)


def _bytes_sent(request: BaseRequest, response: web.StreamResponse) -> int:
    sent = response.body_length
    # A file sent with sendfile bypasses the writer that body_length counts.
    if (
        isinstance(response, web.FileResponse)
        and request.method != "HEAD"
        and response.content_length
        and sent < response.content_length
    ):
        sent += response.content_length
    return sent


def _metrics(request: BaseRequest) -> Metrics | None:
    # A request aiohttp rejected before routing (malformed HTTP) has no app.
    match_info = match_info_if_routed(request)
    apps = match_info.apps if match_info is not None else ()
    return apps[0].get(METRICS) if apps else None


class AccessLogger(AbstractAccessLogger):
    """One line per request (JSON fields under ``[log] format = "json"``) plus the request
    metrics. Authorization headers are never read; secret query values are masked."""

    def log(self, request: BaseRequest, response: web.StreamResponse, time: float) -> None:
        try:
            self._log(request, response, time)
        except Exception:  # an access log must never break a response
            logging.getLogger("angos.http").exception("access log failed")

    def _log(self, request: BaseRequest, response: web.StreamResponse, time: float) -> None:
        if rejected_by_parser(request):
            return  # aiohttp's placeholder, not a request: logged by angos_core.http.rejected
        route = route_template(request)
        content = request.content
        received = int(getattr(content, "total_bytes", 0) or 0)
        sent = _bytes_sent(request, response)
        ops = route in OPS_ROUTES
        metrics = _metrics(request)
        if metrics is not None and not ops:
            metrics.observe_request(route, request.method, response.status, time, received, sent)
        level = logging.DEBUG if ops else logging.INFO
        if not self.logger.isEnabledFor(level):
            return
        query = _query_for_log(request)
        path = request.path + (f"?{query}" if query else "")
        rid = request_id(request)
        fields = {
            "method": request.method,
            "path": path,
            "route": route,
            "status": response.status,
            "duration_ms": round(time * 1000, 3),
            "bytes_in": received,
            "bytes_out": sent,
            "remote": request.remote,
            "user_agent": request.headers.get("User-Agent", ""),
        }
        # Who, never with what: the identity's id and the entry that accepted it.
        identity = request.get(IDENTITY)
        who = ""
        if identity is not None:
            fields["identity"] = identity.id
            fields["provider"] = identity.provider
            who = (
                f' identity="{escape_field(identity.id)}"'
                f" provider={escape_field(identity.provider)}"
            )
        self.logger.log(
            level,
            '%s "%s %s" %s %.3fs in=%d out=%d%s',
            request.remote,
            escape_field(request.method),
            escape_field(path),
            response.status,
            time,
            received,
            sent,
            who,
            # Already safe: the query was masked above, headers are not logged. The fields
            # stay raw: the JSON encoder escapes them.
            extra={"request_id": rid, "fields": fields, "redacted": True},
        )

    @property
    def enabled(self) -> bool:
        # Always: the metrics ride on this call even when the log level hides the line.
        return True

"""Prometheus metrics, one :class:`CollectorRegistry` per application.

A per-app registry (not prometheus-client's global one) keeps tests and several apps in one
process apart. With ``--workers N`` the master sets :data:`MULTIPROC_ENV` to a fresh
directory before it forks: every worker then keeps its values in prometheus-client's
multiprocess files there, and ``/metrics`` on any worker answers the sum over all workers
(see docs/operations.md).

Labels are bounded: the route is the route *template* (``/v2/{name}/manifests/{reference}``)
never the path, methods outside the HTTP set become ``OTHER``, and backend errors are
labelled with an exception class name.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
    values,
)
from prometheus_client.multiprocess import MultiProcessCollector

if TYPE_CHECKING:
    from angos_core.registry.gc import GcResult

_LATENCY_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    120.0, 300.0,
)  # fmt: skip

#: Set by ``angos serve --workers N`` (N > 1): the directory of the workers' metric files.
MULTIPROC_ENV = "ANGOS_METRICS_MULTIPROC_DIR"

_KNOWN_METHODS = frozenset({"GET", "HEAD", "PUT", "POST", "PATCH", "DELETE", "OPTIONS"})


def method_label(method: str) -> str:
    return method if method in _KNOWN_METHODS else "OTHER"


class Metrics:
    """Every metric Angos exports, registered in its own registry."""

    def __init__(self, multiprocess_dir: str | None = None) -> None:
        """``multiprocess_dir``: share values with sibling workers through files there
        (default: :data:`MULTIPROC_ENV` from the environment, unset for one process)."""
        self.multiprocess_dir = multiprocess_dir or os.environ.get(MULTIPROC_ENV) or None
        if self.multiprocess_dir is not None:
            # prometheus-client picks its value storage from this variable when it is
            # imported; re-pick in case it was imported before the master set it.
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = self.multiprocess_dir
            values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]
        self.registry = CollectorRegistry(auto_describe=True)
        self._backend_children: dict[tuple[str, str, str], Any] = {}
        self._request_children: dict[tuple[str, str, int], tuple[Any, Any, Any, Any]] = {}
        r = self.registry
        if self.multiprocess_dir is None:
            # Per-process figures; meaningless summed over workers.
            ProcessCollector(registry=r)
        self.requests = Counter(
            "angos_http_requests",
            "HTTP requests answered, by route template, method and status.",
            ("route", "method", "status"),
            registry=r,
        )
        self.request_seconds = Histogram(
            "angos_http_request_duration_seconds",
            "Time from receiving a request to the end of its response, by route and method.",
            ("route", "method"),
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.bytes_received = Counter(
            "angos_http_request_bytes",
            "Request body bytes received, by route and method.",
            ("route", "method"),
            registry=r,
        )
        self.bytes_sent = Counter(
            "angos_http_response_bytes",
            "Response bytes sent (headers and body), by route and method.",
            ("route", "method"),
            registry=r,
        )
        self.in_flight = Gauge(
            "angos_http_requests_in_flight",
            "Requests being handled right now.",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.uploads_in_progress = Gauge(
            "angos_uploads_in_progress",
            "Upload requests (POST/PATCH/PUT on /blobs/uploads) being handled right now.",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.backend_seconds = Histogram(
            "angos_backend_operation_duration_seconds",
            "Duration of backend calls, by backend kind, backend name and operation.",
            ("kind", "backend", "op"),
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.backend_errors = Counter(
            "angos_backend_operation_errors",
            "Backend calls that raised, by kind, backend name, operation and exception class.",
            ("kind", "backend", "op", "error"),
            registry=r,
        )
        self._pull_through = {
            event: Counter(
                f"angos_pull_through_{metric}",
                help_text,
                ("upstream",),
                registry=r,
            )
            for event, metric, help_text in (
                ("hit", "hits", "Pulls from a pull-through namespace served from the store."),
                ("miss", "misses", "Manifests and blobs fetched from an upstream on a miss."),
                ("bytes", "upstream_bytes", "Bytes read from upstreams."),
                ("error", "upstream_errors", "Upstream requests that failed (down, 5xx, ...)."),
            )
        }
        self.lock_wait = Histogram(
            "angos_lock_wait_seconds",
            "Time spent acquiring repository locks (local queue and provider), by provider.",
            ("backend",),
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.uploads_purged = Counter(
            "angos_uploads_purged",
            "Abandoned upload sessions aborted by the upload purger.",
            registry=r,
        )
        self.upload_sessions_open = Gauge(
            "angos_upload_sessions_open",
            "Upload sessions the last complete purge pass left open (found minus purged).",
            registry=r,
            # Only one worker purges; the others report 0, and a dead worker's value goes.
            multiprocess_mode="livesum",
        )
        self.lock_failures = Counter(
            "angos_lock_failures",
            "Lock acquisitions that failed, by provider and exception class.",
            ("backend", "error"),
            registry=r,
        )

        self.gc_runs = Counter(
            "angos_gc_runs",
            "Garbage collections run inside the server ([maintenance.gc]), by result (ok, failed).",
            ("result",),
            registry=r,
        )
        self.gc_bytes_reclaimed = Counter(
            "angos_gc_bytes_reclaimed",
            "Bytes of blob data the in-server garbage collection deleted.",
            registry=r,
        )
        self.gc_objects_deleted = Counter(
            "angos_gc_objects_deleted",
            "Objects the in-server garbage collection deleted, by kind (blob, manifest_body, "
            "layer_link, manifest).",
            ("kind",),
            registry=r,
        )
        self.gc_seconds = Histogram(
            "angos_gc_duration_seconds",
            "Duration of in-server garbage collections.",
            buckets=(1, 5, 15, 60, 300, 900, 3600, 4 * 3600),
            registry=r,
        )

        self.config_reloads = Counter(
            "angos_config_reloads",
            "Config reloads (SIGHUP), by result: success, or failure (the old config kept).",
            ("result",),
            registry=r,
        )
        for result in ("success", "failure"):
            self.config_reloads.labels(result)  # listed at 0 from startup
        self.auth_attempts = Counter(
            "angos_auth_attempts",
            "Authentication attempts (requests presenting credentials), by credential method "
            "(basic, bearer, mtls) and result (success, anonymous, failure, unrecognized, "
            "unavailable, limited).",
            ("method", "result"),
            registry=r,
        )

    def observe_backend(
        self, kind: str, backend: str, op: str, seconds: float, error: str | None
    ) -> None:
        """The wrappers' observer (see :mod:`angos_core.registry.wrappers`); never raises."""
        key = (kind, backend, op)
        child = self._backend_children.get(key)
        if child is None:
            child = self._backend_children[key] = self.backend_seconds.labels(*key)
        child.observe(seconds)
        if error is not None:
            self.backend_errors.labels(kind, backend, op, error).inc()
        if kind == "lock_provider" and op == "acquire":
            self.lock_wait.labels(backend).observe(seconds)
            if error is not None:
                self.lock_failures.labels(backend, error).inc()

    def config_reloaded(self, result: str) -> None:
        """A SIGHUP reload: ``success`` or ``failure`` (the old config kept)."""
        self.config_reloads.labels(result).inc()

    def observe_auth(self, method: str, result: str) -> None:
        """One authentication attempt (the authenticator chain's observer)."""
        self.auth_attempts.labels(method, result).inc()

    def gc_finished(self, result: GcResult | None, secs: float) -> None:
        """One in-server collection ended (``result`` None: it failed)."""
        self.gc_seconds.observe(secs)
        if result is None:
            self.gc_runs.labels("failed").inc()
            return
        self.gc_runs.labels("ok").inc()
        self.gc_bytes_reclaimed.inc(result.bytes_freed)
        for kind, count in (
            ("blob", result.blobs_deleted),
            ("manifest_body", result.bodies_deleted),
            ("layer_link", result.layer_links_deleted),
            ("manifest", result.manifests_deleted),
        ):
            self.gc_objects_deleted.labels(kind).inc(count)

    def observe_pull_through(self, event: str, upstream: str, amount: int) -> None:
        """A pull-through namespace's hit, miss, upstream bytes or upstream error, by the
        upstream's URL (which holds no credentials: the config refuses them there)."""
        self._pull_through[event].labels(upstream).inc(amount)

    def upload_purged(self) -> None:
        """One abandoned session aborted (the upload purger's observer)."""
        self.uploads_purged.inc()

    def upload_sessions_left(self, count: int) -> None:
        """Sessions left open by a complete purge pass."""
        self.upload_sessions_open.set(count)

    def observe_request(
        self,
        route: str,
        method: str,
        status: int,
        seconds: float,
        received: int,
        sent: int,
    ) -> None:
        # The label children are cached: ``labels()`` validates and locks on every call,
        # which showed in profiles of small requests.
        key = (route, method, status)
        children = self._request_children.get(key)
        if children is None:
            m = method_label(method)
            children = self._request_children[key] = (
                self.requests.labels(route, m, str(status)),
                self.request_seconds.labels(route, m),
                self.bytes_received.labels(route, m),
                self.bytes_sent.labels(route, m),
            )
        count, latency, received_bytes, sent_bytes = children
        count.inc()
        latency.observe(seconds)
        if received:
            received_bytes.inc(received)
        if sent:
            sent_bytes.inc(sent)

    def render(self) -> bytes:
        if self.multiprocess_dir is None:
            return generate_latest(self.registry)
        combined = CollectorRegistry()
        MultiProcessCollector(combined, path=self.multiprocess_dir)  # type: ignore[no-untyped-call]
        return generate_latest(combined)


METRICS: web.AppKey[Metrics] = web.AppKey("angos_metrics", Metrics)


async def metrics_handler(request: web.Request) -> web.StreamResponse:
    body = request.app[METRICS].render()
    response = web.Response(body=body)
    # CONTENT_TYPE_LATEST carries its own charset/version parameters.
    response.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return response

"""Running the registry: one process, or N worker processes sharing one port.

One process (``workers = 1``) serves the app until SIGTERM or SIGINT, then shuts down
gracefully: the listening socket closes at once (new connections are refused), idle
keep-alive connections close, in-flight requests get ``[server] shutdown_grace_secs`` to
finish, the backends close, and the process exits 0.

With ``workers = N > 1`` a master process forks N workers before any event loop exists; each
worker binds its own socket to the same address with ``SO_REUSEPORT`` (the kernel spreads new
connections over them) and runs the one-process server above. The master forwards SIGTERM and
SIGINT to the workers as SIGTERM, waits for them, and exits 0. A worker that dies on its own
is replaced; one that fails while starting stops the whole server (its exit code is the
master's). Workers share nothing in memory, so N > 1 requires a lock provider and a cache
every process shares (see :func:`check_shared_backends`).

SIGHUP reloads the config file (:mod:`angos_core.http.live`): one process reloads itself;
the master forwards it to every worker, and each reloads on its own (each logs its line),
without dropping a connection or a request.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import resource
import select
import shutil
import signal
import socket
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web, web_response

from angos_core import __version__
from angos_core.auth.config import exposure_warning
from angos_core.config import AngosConfig
from angos_core.errors import AngosError, ConfigError
from angos_core.http.connections import (
    AcceptErrors,
    LimitedAppRunner,
    connection_cap,
    raise_open_file_limit,
)
from angos_core.http.live import ConfigLoader
from angos_core.listen import BACKLOG, check_port_free, listen_sockets
from angos_core.logs import config_summary
from angos_core.tls import ReloadingContext, build_context

log = logging.getLogger("angos")

#: Extra seconds the master waits past the grace period before it SIGKILLs a worker.
KILL_MARGIN_SECS = 10.0
#: A worker that dies within this many seconds of starting is a crash loop: stop everything.
MIN_WORKER_LIFE_SECS = 5.0


def describe(config: AngosConfig) -> str:
    """``kind=backend`` for every declared kind; an ``Entries`` kind's backends are joined
    by ``+`` (``authenticator=identity[alice,bob]+htpasswd``), or ``none``."""
    parts = []
    for kind in config.kinds:
        names = [
            f"{c.name}[{','.join(c.entries)}]" if c.entries else c.name
            for c in config.selected(kind.name)
        ]
        parts.append(f"{kind.name}={'+'.join(names) or 'none'}")
    return ", ".join(parts)


def scheme(config: AngosConfig) -> str:
    return "https" if config.server.tls is not None else "http"


def log_startup(config: AngosConfig) -> None:
    """The effective configuration, secrets replaced by ``***``; and, once the address is
    known to be listenable, the warning of an anonymous registry on the network."""
    log.info("config: %s", json.dumps(config_summary(config), default=str, sort_keys=True))
    exposed = exposure_warning(config.server.bind_address, config.auth)
    if exposed is not None:
        log.warning(exposed)


def install_event_loop() -> str:
    """The stdlib loop unless ``ANGOS_EVENT_LOOP=uvloop`` asks for uvloop.

    Measured on this code (aiohttp 3.14): the stdlib loop served ~1.7x the manifest GETs per
    second of uvloop, and only it gives aiohttp a zero-copy ``sendfile`` for blob pulls
    (uvloop falls back to read + write, ~3x the CPU per byte).
    """
    if os.environ.get("ANGOS_EVENT_LOOP", "").lower() != "uvloop":
        return "asyncio"
    try:
        import uvloop
    except ImportError:
        return "asyncio"
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return "uvloop"


def check_shared_backends(config: AngosConfig, workers: int) -> None:
    """Refuse N > 1 workers with per-process lock provider or cache (``ConfigError``)."""
    if workers <= 1:
        return
    store = config.metadata_store.name
    locks, cache = config.lock_provider, config.cache
    # What the backend's spec declares (capability "shared"), never a guess from its name.
    if not locks.shared:
        raise ConfigError(
            "server.workers",
            f"{workers} workers need a lock provider shared by every process, but the lock "
            f"provider is '{locks.name}': it only excludes requests inside one process, so two "
            "workers could interleave a tag update and lose a write. Configure a shared one, "
            f'e.g. [metadata_store.{store}.redis] url = "redis://HOST:6379", or run one '
            "worker (see docs/operations.md)",
        )
    if not cache.shared:
        raise ConfigError(
            "server.workers",
            f"{workers} workers need a cache shared by every process, but the cache is "
            f"'{cache.name}': each worker would keep its own copy, and a tag moved through one "
            "worker would still be answered with the old digest by the others until the entry "
            'expires. Configure a shared one, e.g. [cache.redis] url = "redis://HOST:6379", '
            "or run one worker (see docs/operations.md)",
        )


# --------------------------------------------------------------------------- one process


def limited_runner(app: web.Application, config: AngosConfig) -> LimitedAppRunner:
    """The app's runner, holding at most ``[server] max_connections`` connections (see
    :mod:`angos_core.http.connections`), with ``accept()`` failures logged per interval."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    open_files = soft if soft != resource.RLIM_INFINITY else 1 << 20
    cap = connection_cap(config.server.max_connections, open_files)
    runner = LimitedAppRunner(
        app, max_connections=cap, handle_signals=False, shutdown_timeout=CLEANUP_SECS
    )
    AcceptErrors(runner).install(asyncio.get_running_loop())
    return runner


#: Seconds aiohttp's own clean-up may take once the drain has ended (cancelled requests
#: unwinding, connections closing).
CLEANUP_SECS = 5.0


async def drain(runner: web.AppRunner, app: web.Application, grace: float) -> int:
    """Stop accepting, close idle connections, and give in-flight requests up to ``grace``
    seconds; cancel what is left. Returns the number of requests cancelled.

    Unlike ``AppRunner.cleanup`` alone, a connection whose request is still receiving its
    body is not closed (aiohttp drops the data of a closing connection), so an upload in
    progress can complete; it closes after its response.
    """
    from angos_core.http.aiohttp_compat import request_in_progress
    from angos_core.http.context import mark_shutting_down
    from angos_core.http.observe import REQUEST_TASKS

    mark_shutting_down(app)
    for site in list(runner.sites):
        await site.stop()
    tasks = app[REQUEST_TASKS]
    log.info(
        "shutting down: listening stopped; %d request(s) in flight get up to %gs",
        len(tasks),
        grace,
    )
    loop = asyncio.get_running_loop()
    deadline = loop.time() + grace
    while True:
        server = runner.server
        for conn in server.connections if server is not None else []:
            if not request_in_progress(conn):
                conn.close()
        remaining = deadline - loop.time()
        if not tasks or remaining <= 0:
            break
        await asyncio.wait(set(tasks), timeout=min(remaining, 0.2))
    left = list(tasks)
    if left:
        log.warning("grace period over: cancelling %d request(s) still in flight", len(left))
        for task in left:
            task.cancel()
        await asyncio.wait(left, timeout=CLEANUP_SECS)
    return len(left)


async def serve_app(
    config: AngosConfig,
    sockets: list[socket.socket],
    *,
    on_ready: Callable[[list[tuple[str, int]]], None] | None = None,
    maintenance: bool = True,
    reload_config: ConfigLoader | None = None,
    reload_at_start: bool = False,
) -> None:
    """Serve on ``sockets`` (already listening: see :mod:`angos_core.listen`) until
    SIGTERM/SIGINT, then shut down gracefully (see the module docstring); on SIGHUP, swap in
    ``reload_config()`` (:func:`angos_core.http.live.reload_from`).

    ``maintenance``: run the background work of ``[maintenance]`` in this process.
    ``reload_at_start``: reload once serving, as if SIGHUP came (a worker that replaces one
    after a reload starts from the master's startup config, then catches up).
    """
    from angos_core.http.app import make_app
    from angos_core.http.live import reload_from

    # Each process builds its own context (and watches the files itself), before the
    # backends open: a certificate that stopped loading fails the worker at once.
    tls = ReloadingContext(config.server.tls) if config.server.tls is not None else None
    app = make_app(config, maintenance=maintenance)
    # The app sets the header on its own responses; aiohttp's answers to malformed HTTP never
    # reach the app and read this module default instead (one config per process here).
    web_response.SERVER_SOFTWARE = config.server.server_header  # type: ignore[attr-defined]
    grace = config.server.shutdown_grace_secs
    runner = limited_runner(app, config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    hangups = asyncio.Event()
    loop.add_signal_handler(signal.SIGHUP, hangups.set)
    if reload_at_start:
        hangups.set()
    await runner.setup()  # opens the backends

    async def reloads() -> None:
        # One at a time; SIGHUPs arriving during a reload make one more after it.
        while True:
            await hangups.wait()
            hangups.clear()
            if reload_config is None:
                log.warning("SIGHUP: this server has no config file to reload")
                continue
            await reload_from(app, reload_config)

    reloading = asyncio.create_task(reloads(), name="angos-reload")
    watch = asyncio.create_task(tls.run()) if tls is not None else None
    try:
        for sock in sockets:
            ssl_context = tls.context if tls is not None else None
            await web.SockSite(runner, sock, backlog=BACKLOG, ssl_context=ssl_context).start()
        addresses = [(str(a[0]), int(a[1])) for a in runner.addresses]
        if on_ready is not None:
            on_ready(addresses)
        await stop.wait()
        reloading.cancel()
        # A second signal during the grace period is ignored (SIGKILL forces).
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, lambda: None)
        await drain(runner, app, grace)
    finally:
        reloading.cancel()
        if watch is not None:
            watch.cancel()
        await runner.cleanup()
        loop.remove_signal_handler(signal.SIGHUP)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
            # Stopping already: a late signal must not turn the exit 0 into a kill.
            signal.signal(sig, signal.SIG_IGN)


def serve_one(config: AngosConfig, reload_config: ConfigLoader | None = None) -> int:
    # Until serve_app handles it: a SIGHUP while starting must not end the process (the
    # config it reads now is the current one anyway).
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    # Bound before the backends open, so a port in use fails before anything is created.
    sockets = listen_sockets(config.server.bind_address, config.server.port)
    log_startup(config)
    loop_name = install_event_loop()
    log.debug("event loop: %s", loop_name)

    def announce(addresses: list[tuple[str, int]]) -> None:
        for host, real_port in addresses:
            log.info(
                "angos %s serving on %s://%s:%s (%s; config: %s)",
                __version__,
                scheme(config),
                host,
                real_port,
                describe(config),
                config.source,
            )

    asyncio.run(serve_app(config, sockets, on_ready=announce, reload_config=reload_config))
    log.info("angos stopped")
    return 0


# --------------------------------------------------------------------------- workers


def _die_with_parent() -> None:
    """Linux: SIGTERM this worker if the master dies (so a killed master leaves no orphans)."""
    # Imported here, in a forked worker only: a single-process server never needs ctypes.
    import ctypes

    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)


@dataclass
class _Worker:
    index: int
    pid: int
    ready_fd: int
    started: float
    ready: bool = False


def _port_holder(bind: str, port: int) -> tuple[socket.socket, int]:
    """A bound, non-listening SO_REUSEPORT socket that holds the workers' port from before
    the first one starts: fixes the port when 0 was asked for (every worker then binds that
    same port; the kernel only hands connections to listeners), and keeps a server started
    meanwhile without SO_REUSEPORT off it. :class:`ListenError` if the port is in use."""
    port = check_port_free(bind, port)
    family, kind, proto, _, address = socket.getaddrinfo(
        bind or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    holder = socket.socket(family, kind, proto)
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    holder.bind(address)
    return holder, int(holder.getsockname()[1])


class Master:
    def __init__(
        self,
        config: AngosConfig,
        bind: str,
        port: int,
        workers: int,
        reload_config: ConfigLoader | None = None,
    ) -> None:
        self.config = config
        self.reload_config = reload_config
        self.bind = bind
        self.port = port
        self.count = workers
        self.workers: dict[int, _Worker] = {}
        self.stopping = False
        self.stop_started = 0.0
        self.failed_code = 0
        self.metrics_dir = ""
        #: Whether a SIGHUP was forwarded: a replacement worker then reloads when it starts.
        self.reloaded = False

    # ------------------------------------------------------------------ child side

    def _child(self, index: int, ready_w: int) -> None:
        code = 1
        try:
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
                signal.signal(sig, signal.SIG_DFL)
            # Until serve_app handles it: a SIGHUP forwarded to a worker still starting must
            # not end it (its config is the one just read anyway).
            signal.signal(signal.SIGHUP, signal.SIG_IGN)
            _die_with_parent()
            install_event_loop()

            def ready(addresses: list[tuple[str, int]]) -> None:
                log.debug("worker %d (pid %d) listening on %s", index, os.getpid(), addresses)
                os.write(ready_w, b"1")

            # Maintenance (upload purging) in worker 0 only: the workers share one store, so
            # a pass in each would repeat the same listing N times and race on the same
            # (idempotent, so harmless) aborts. A replaced worker 0 takes it up again.
            sockets = listen_sockets(self.bind, self.port, reuse_port=True)
            asyncio.run(
                serve_app(
                    self.config,
                    sockets,
                    on_ready=ready,
                    maintenance=index == 0,
                    reload_config=self.reload_config,
                    reload_at_start=self.reloaded,
                )
            )
            code = 0
        except AngosError as exc:
            print(f"angos: worker {index}: {exc}", file=sys.stderr)
        except BaseException:
            traceback.print_exc()
        finally:
            with contextlib.suppress(Exception):
                sys.stderr.flush()
                logging.shutdown()
            os._exit(code)

    def _spawn(self, index: int) -> None:
        ready_r, ready_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(ready_r)
            self._child(index, ready_w)
        os.close(ready_w)
        self.workers[pid] = _Worker(index, pid, ready_r, time.monotonic())

    # ------------------------------------------------------------------ master side

    def _signal(self, signum: int, frame: object) -> None:
        if not self.stopping:
            log.info(
                "%s: stopping %d worker(s), grace %gs",
                signal.Signals(signum).name,
                len(self.workers),
                self.config.server.shutdown_grace_secs,
            )
        self._stop_all()

    def _hangup(self, signum: int, frame: object) -> None:
        if self.stopping:
            return
        log.info("SIGHUP: each of %d worker(s) reloads the config", len(self.workers))
        self.reloaded = True
        for pid in self.workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGHUP)

    def _stop_all(self) -> None:
        if not self.stopping:
            self.stopping = True
            self.stop_started = time.monotonic()
        for pid in self.workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    def _reap(self) -> None:
        while self.workers:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                self.workers.clear()
                return
            if pid == 0:
                return
            worker = self.workers.pop(pid, None)
            if worker is None:
                continue
            os.close(worker.ready_fd)
            code = os.waitstatus_to_exitcode(status)
            self._forget_metrics(pid)
            if self.stopping:
                # -SIGTERM: a worker still starting, before its own handler was installed.
                if code not in (0, -signal.SIGTERM):
                    log.warning("worker %d (pid %d) exited with %d", worker.index, pid, code)
                    self.failed_code = self.failed_code or 1
                continue
            lived = time.monotonic() - worker.started
            if not worker.ready or lived < MIN_WORKER_LIFE_SECS:
                log.error(
                    "worker %d (pid %d) exited with %d while starting; stopping",
                    worker.index,
                    pid,
                    code,
                )
                self.failed_code = code if code > 0 else 1
                self._stop_all()
                continue
            log.error(
                "worker %d (pid %d) exited with %d; starting a new one", worker.index, pid, code
            )
            self._spawn(worker.index)

    def _forget_metrics(self, pid: int) -> None:
        """Drop a dead worker's live gauges (its counters keep counting in the sums)."""
        with contextlib.suppress(Exception):
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(pid, self.metrics_dir)  # type: ignore[no-untyped-call]

    def _check_ready(self, timeout: float) -> None:
        waiting = {w.ready_fd: w for w in self.workers.values() if not w.ready}
        if not waiting:
            time.sleep(timeout)
            return
        with contextlib.suppress(InterruptedError):
            readable, _, _ = select.select(list(waiting), [], [], timeout)
            for fd in readable:
                if os.read(fd, 1):
                    waiting[fd].ready = True

    def run(self) -> int:
        from angos_core.http.metrics import MULTIPROC_ENV

        holder, self.port = _port_holder(self.bind, self.port)
        log_startup(self.config)
        # The workers' metric files: /metrics on any worker sums over all of them.
        self.metrics_dir = tempfile.mkdtemp(prefix="angos-metrics-")
        os.environ[MULTIPROC_ENV] = self.metrics_dir
        try:
            # Before the first fork: a SIGHUP then is forwarded, never the default (exit).
            signal.signal(signal.SIGHUP, self._hangup)
            for index in range(self.count):
                self._spawn(index)
            signal.signal(signal.SIGTERM, self._signal)
            signal.signal(signal.SIGINT, self._signal)
            announced = False
            grace = self.config.server.shutdown_grace_secs
            while self.workers:
                self._check_ready(0.1)
                self._reap()
                if (
                    not announced
                    and not self.stopping
                    and all(w.ready for w in self.workers.values())
                ):
                    announced = True
                    pids = ", ".join(str(p) for p in sorted(self.workers))
                    log.info(
                        "angos %s serving on %s://%s:%s with %d workers (pids %s; %s; config: %s)",
                        __version__,
                        scheme(self.config),
                        self.bind,
                        self.port,
                        self.count,
                        pids,
                        describe(self.config),
                        self.config.source,
                    )
                if (
                    self.stopping
                    and time.monotonic() - self.stop_started > grace + KILL_MARGIN_SECS
                ):
                    for pid in self.workers:
                        log.error("worker pid %d did not stop in time: SIGKILL", pid)
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(pid, signal.SIGKILL)
                    self.stop_started = time.monotonic()
        finally:
            holder.close()
            shutil.rmtree(self.metrics_dir, ignore_errors=True)
        log.info("angos stopped")
        return self.failed_code


def serve(config: AngosConfig, reload_config: ConfigLoader | None = None) -> int:
    """Serve ``config`` (command-line overrides already applied) until stopped; the process
    exit code. A port that cannot be listened on is a :class:`ListenError` before anything
    is opened. ``reload_config`` is what SIGHUP loads (see the module docstring)."""
    server = config.server
    check_shared_backends(config, server.workers)
    if server.tls is not None:
        # Every file checked before a port is bound or a store created (each worker then
        # builds its own context from the same files).
        build_context(server.tls)
    raise_open_file_limit()  # before forking: the workers inherit it
    if server.workers <= 1:
        return serve_one(config, reload_config)
    master = Master(config, server.bind_address, server.port, server.workers, reload_config)
    return master.run()

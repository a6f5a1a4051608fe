"""``python -m angos_core.testing.moto_bounded [moto.server args]``: moto's server, handling
at most ``ANGOS_MOTO_MAX_REQUESTS`` requests at a time (the others wait their turn).

moto holds every request body and object it handles in memory several times over (a 50 MiB
part costs it about 300 MiB while it stores it; completing a multipart upload assembles the
whole object, twice). Bounding its concurrency bounds its peak memory without changing
what the client under test does: it still sends as many requests at once as it likes.
Started by :func:`angos_core.testing.moto_server.start_moto_server`.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable, Iterable
from typing import Any

import moto.server
from werkzeug.serving import run_simple

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def bounded(app: WsgiApp, limit: int) -> WsgiApp:
    """``app`` running at most ``limit`` requests at once."""
    gate = threading.BoundedSemaphore(limit)

    def handle(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        with gate:
            # moto answers with a ready body: nothing of the request outlives the gate.
            return list(app(environ, start_response))

    return handle


def main() -> None:
    limit = int(os.environ["ANGOS_MOTO_MAX_REQUESTS"])
    if getattr(moto.server, "run_simple", None) is not run_simple:
        raise RuntimeError("moto.server no longer serves through werkzeug's run_simple")

    def run_bounded(host: str, port: int, app: WsgiApp, **kwargs: Any) -> None:
        run_simple(host, port, bounded(app, limit), **kwargs)

    # main() looks the name up in its module when it runs.
    setattr(moto.server, "run_simple", run_bounded)  # noqa: B010
    moto.server.main(sys.argv[1:])


if __name__ == "__main__":
    main()

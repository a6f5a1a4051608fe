"""``python -m bench.pull_through``: pulling an image through a pull-through cache against
pulling it straight from the upstream (issue 15).

Two ``angos serve`` on fresh fs stores on 127.0.0.1: an upstream holding one image (a
config and ``--layers`` layers of ``--size`` bytes in all, repeatable pseudo-random bytes),
and a cache with ``[repository."docker.io"]`` caching it. A pull is what docker does: the
manifest by tag, then every layer, 3 at a time, each body read whole and counted against its
``Content-Length``. Three figures, one run each (a shared machine: the table says the load
average it ran under):

- **direct**: the pull from the upstream;
- **cold**: the same pull through the cache, its store empty (every blob fetched once,
  streamed while stored), ratio direct/cold (target at least 0.9);
- **warm**: the pull through the cache again, all from its store, ratio direct/warm (target
  at least 1.0).

The last column is the CPU seconds the cache process spent on the pull (user + system,
from /proc): less at the mercy of the other tenants than the wall time.

On loopback the direct pull is the upstream's ``sendfile`` at GB/s, which no upstream
across a network reaches. ``--upstream-rate 1gbit`` adds a second round, side by side with
the first: the upstream's TCP replies shaped to that rate on ``lo`` (bench.throttle: an htb
class, root and tc needed), so that the direct and the cold pull cross a link of that
bandwidth (no added latency) and the warm one, served by the cache, does not. Each round has
a cache with a fresh store; the upstream is shared. Under the table, the bytes the upstream
sent through the throttle in each pull of that round (the warm one should send none). A
qdisc already on ``lo`` is refused, not replaced, and ours is removed on every exit (an
error, Ctrl-C, SIGTERM).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import time
from dataclasses import dataclass

from aiohttp import ClientSession, ClientTimeout

from bench.datagen import BlobStream
from bench.servers import Angos, make_workdir
from bench.throttle import Throttle, ThrottleError, parse_rate

CONFIG = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
LAYER = "application/vnd.oci.image.layer.v1.tar"
PULL_CONCURRENCY = 3
MB = 1_000_000


async def _push(session: ClientSession, base: str, name: str, layers: list[BlobStream]) -> None:
    async with session.post(
        f"{base}/v2/{name}/blobs/uploads/?digest={_digest(CONFIG)}", data=CONFIG
    ) as r:
        assert r.status == 201, r.status
    for layer in layers:
        async with session.post(f"{base}/v2/{name}/blobs/uploads/") as r:
            assert r.status == 202, r.status
            location = r.headers["Location"]
        async with session.patch(f"{base}{location}", data=layer.aiter()) as r:
            assert r.status == 202, r.status
            location = r.headers["Location"]
        async with session.put(f"{base}{location}?digest={layer.digest}") as r:
            assert r.status == 201, (r.status, await r.text())
    manifest = {
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": _digest(CONFIG),
            "size": len(CONFIG),
        },
        "layers": [{"mediaType": LAYER, "digest": x.digest, "size": x.size} for x in layers],
    }
    body = json.dumps(manifest).encode()
    headers = {"Content-Type": MANIFEST}
    async with session.put(f"{base}/v2/{name}/manifests/v1", data=body, headers=headers) as r:
        assert r.status == 201, (r.status, await r.text())


def _digest(data: bytes) -> str:
    import hashlib

    return "sha256:" + hashlib.sha256(data).hexdigest()


async def pull(session: ClientSession, base: str, name: str) -> tuple[float, int]:
    """Seconds and bytes of one docker-like pull of ``name:v1``."""
    start = time.perf_counter()
    async with session.get(f"{base}/v2/{name}/manifests/v1", headers={"Accept": MANIFEST}) as r:
        assert r.status == 200, (r.status, await r.text())
        manifest = json.loads(await r.read())
    digests = [manifest["config"]["digest"], *(x["digest"] for x in manifest["layers"])]
    gate = asyncio.Semaphore(PULL_CONCURRENCY)
    total = 0

    async def blob(digest: str) -> None:
        nonlocal total
        async with gate, session.get(f"{base}/v2/{name}/blobs/{digest}") as r:
            assert r.status == 200, (r.status, await r.text())
            got = 0
            async for chunk in r.content.iter_chunked(1 << 20):
                got += len(chunk)
            assert got == r.content_length, (digest, got, r.content_length)
            total += got

    await asyncio.gather(*(blob(d) for d in digests))
    return time.perf_counter() - start, total


@dataclass
class Round:
    """The three pulls of one link, each through a cache with a fresh store."""

    link: str
    load: tuple[float, float]
    seconds: dict[str, float]
    cpu: dict[str, float]
    #: Bytes the upstream sent through the throttle during each pull (throttled links only).
    upstream_bytes: dict[str, int] | None = None


async def _round(
    session: ClientSession,
    upstream: Angos,
    base_dir: str | None,
    link: str,
    throttle: Throttle | None,
    caches: list[Angos],
) -> tuple[Round, int]:
    cache = Angos(
        "cache",
        make_workdir(base_dir, "pt-cache"),
        extra_toml=(
            '\n[repository."docker.io"]\n[[repository."docker.io".upstream]]\n'
            f'url = "{upstream.url}"\n'
        ),
    )
    caches.append(cache)
    cache.start()
    load_before = os.getloadavg()[0]
    seconds: dict[str, float] = {}
    cpu: dict[str, float] = {}
    sent: dict[str, int] = {}
    sizes = []
    for pull_name, base, name in (
        ("direct", upstream.url, "library/bench"),
        ("cold", cache.url, "docker.io/library/bench"),
        ("warm", cache.url, "docker.io/library/bench"),
    ):
        cpu_start = cache.cpu_seconds()
        sent_start = throttle.sent_bytes() if throttle is not None else 0
        seconds[pull_name], nbytes = await pull(session, base, name)
        cpu[pull_name] = cache.cpu_seconds() - cpu_start
        if throttle is not None:
            sent[pull_name] = throttle.sent_bytes() - sent_start
        sizes.append(nbytes)
    assert len(set(sizes)) == 1, sizes
    load = (load_before, os.getloadavg()[0])
    return Round(link, load, seconds, cpu, sent if throttle is not None else None), sizes[0]


async def run(size: int, layer_count: int, base_dir: str | None, upstream_rate: str | None) -> None:
    layers = [BlobStream(seed, size // layer_count) for seed in range(1, layer_count + 1)]
    up = Angos("upstream", make_workdir(base_dir, "pt-upstream"))
    caches: list[Angos] = []
    throttle = Throttle(up.port, upstream_rate) if upstream_rate else None
    try:
        if throttle is not None:
            # Before minutes of pushing and pulling: tc not permitted, or lo already shaped.
            throttle.check()
        up.start()
        timeout = ClientTimeout(total=None, sock_read=300)
        async with ClientSession(timeout=timeout) as session:
            await _push(session, up.url, "library/bench", layers)
            rounds = []
            loopback, nbytes = await _round(session, up, base_dir, "loopback", None, caches)
            rounds.append(loopback)
            if throttle is not None:
                # Each round has a cache of its own, so that its cold pull starts empty; the
                # upstream and its (page-cached) store are shared.
                with throttle:
                    shaped, _ = await _round(
                        session, up, base_dir, f"upstream at {upstream_rate}", throttle, caches
                    )
                rounds.append(shaped)
        _report(rounds, nbytes, layer_count)
    finally:
        if throttle is not None:
            throttle.remove()
        for server in (*caches, up):
            server.stop()
            shutil.rmtree(server.workdir, ignore_errors=True)


def _report(rounds: list[Round], nbytes: int, layer_count: int) -> None:
    print(f"image: {nbytes / MB:.0f} MB in {layer_count} layers + config")
    for r in rounds:
        print(f"{r.link}: load average before {r.load[0]:.2f}, after {r.load[1]:.2f}")
    for r in rounds:
        if r.upstream_bytes is not None:
            sent = ", ".join(f"{k} {v:,}" for k, v in r.upstream_bytes.items())
            print(f"{r.link}: bytes the upstream sent through the throttle: {sent}")
    print()
    head = "| pull | target |"
    rule = "|---|---|"
    for r in rounds:
        head += f" {r.link}: s | MB/s | ratio direct / this | cache CPU s |"
        rule += "---:|---:|---:|---:|"
    print(head)
    print(rule)
    for pull_name, label, target in (
        ("direct", "direct from the upstream", ""),
        ("cold", "cold, through the cache", ">= 0.9"),
        ("warm", "warm, through the cache", ">= 1.0"),
    ):
        line = f"| {label} | {target} |"
        for r in rounds:
            secs = r.seconds[pull_name]
            cpu = "" if pull_name == "direct" else f"{r.cpu[pull_name]:.2f}"
            ratio = r.seconds["direct"] / secs
            line += f" {secs:.2f} | {nbytes / MB / secs:.0f} | {ratio:.2f} | {cpu} |"
        print(line)


def _rate(text: str) -> str:
    try:
        parse_rate(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=512, help="image size in MiB (512)")
    parser.add_argument("--layers", type=int, default=4, help="layers (4)")
    parser.add_argument("--workdir", help="where the stores go (default: a temporary dir)")
    parser.add_argument(
        "--upstream-rate",
        type=_rate,
        help="also pull with the upstream's replies shaped to this tc rate, e.g. 1gbit "
        "(needs root and tc; default: loopback only)",
    )
    args = parser.parse_args()

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    # As Ctrl-C: the finally blocks stop the servers and take the throttle off lo.
    signal.signal(signal.SIGTERM, on_term)
    try:
        asyncio.run(run(args.size * 1024 * 1024, args.layers, args.workdir, args.upstream_rate))
    except ThrottleError as exc:
        raise SystemExit(
            f"bench.pull_through: --upstream-rate {args.upstream_rate}: {exc}"
        ) from None


if __name__ == "__main__":
    main()

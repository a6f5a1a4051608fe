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
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import time

from aiohttp import ClientSession, ClientTimeout

from bench.datagen import BlobStream
from bench.servers import Angos, make_workdir

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


async def run(size: int, layer_count: int, base_dir: str | None) -> None:
    layers = [BlobStream(seed, size // layer_count) for seed in range(1, layer_count + 1)]
    up = Angos("upstream", make_workdir(base_dir, "pt-upstream"))
    up.start()
    cache = None
    try:
        timeout = ClientTimeout(total=None, sock_read=300)
        async with ClientSession(timeout=timeout) as session:
            await _push(session, up.url, "library/bench", layers)
            cache = Angos(
                "cache",
                make_workdir(base_dir, "pt-cache"),
                extra_toml=(
                    '\n[repository."docker.io"]\n[[repository."docker.io".upstream]]\n'
                    f'url = "{up.url}"\n'
                ),
            )
            cache.start()
            load_before = os.getloadavg()
            direct, nbytes = await pull(session, up.url, "library/bench")
            cpu_start = cache.cpu_seconds()
            cold, cold_bytes = await pull(session, cache.url, "docker.io/library/bench")
            cpu_cold = cache.cpu_seconds()
            warm, warm_bytes = await pull(session, cache.url, "docker.io/library/bench")
            cpu_warm = cache.cpu_seconds()
            load_after = os.getloadavg()
            assert nbytes == cold_bytes == warm_bytes
        print(f"image: {nbytes / MB:.0f} MB in {layer_count} layers + config")
        print(f"load average: before {load_before[0]:.2f}, after {load_after[0]:.2f}\n")
        print("| pull | seconds | MB/s | ratio (direct / this) | target | cache CPU s |")
        print("|---|---|---|---|---|---|")
        for label, secs, target, cpu in (
            ("direct from the upstream", direct, "", ""),
            ("cold, through the cache", cold, ">= 0.9", f"{cpu_cold - cpu_start:.2f}"),
            ("warm, through the cache", warm, ">= 1.0", f"{cpu_warm - cpu_cold:.2f}"),
        ):
            rate = nbytes / MB / secs
            print(f"| {label} | {secs:.2f} | {rate:.0f} | {direct / secs:.2f} | {target} | {cpu} |")
    finally:
        for server in (cache, up):
            if server is not None:
                server.stop()
                shutil.rmtree(server.workdir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=512, help="image size in MiB (512)")
    parser.add_argument("--layers", type=int, default=4, help="layers (4)")
    parser.add_argument("--workdir", help="where the stores go (default: a temporary dir)")
    args = parser.parse_args()
    asyncio.run(run(args.size * 1024 * 1024, args.layers, args.workdir))


if __name__ == "__main__":
    main()

"""The benchmark command: Angos and CNCF Distribution side by side, one run, one table.

    bench/run [--quick] [--registries angos,distribution] [--json FILE] [--markdown FILE]

Both registries run at once on fresh temporary fs stores on 127.0.0.1. Every workload runs
against both, alternating which goes first, from this process (aiohttp; wrk for manifest
GETs), which is separate from both servers. See bench/README.md for what each row means.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import resource
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import machine
from bench import workloads as w
from bench.datagen import BlobStream
from bench.servers import Angos, Distribution, Registry, ensure_tools, make_workdir

MiB = 1024 * 1024
GiB = 1024 * MiB


@dataclass(frozen=True)
class Sizes:
    big: int  # workloads 1-3
    chunk: int  # workload 2
    pull_clients: int
    wrk_seconds: int
    wrk_connections: int
    images: int
    image_clients: int
    layer_min: int
    layer_max: int
    tags: int
    tag_page: int
    tag_seed_clients: int
    list_rounds: int
    loopback_bytes: int
    sha_bytes: int
    timeout: float  # per workload and registry


FULL = Sizes(
    big=GiB,
    chunk=16 * MiB,
    pull_clients=8,
    wrk_seconds=10,
    wrk_connections=64,
    images=200,
    image_clients=16,
    layer_min=4 * 1024,
    layer_max=64 * 1024,
    tags=10_000,
    tag_page=1000,
    tag_seed_clients=32,
    list_rounds=3,
    loopback_bytes=4 * GiB,
    sha_bytes=GiB,
    timeout=900,
)
QUICK = Sizes(
    big=32 * MiB,
    chunk=8 * MiB,
    pull_clients=8,
    wrk_seconds=2,
    wrk_connections=64,
    images=20,
    image_clients=16,
    layer_min=4 * 1024,
    layer_max=64 * 1024,
    tags=200,
    tag_page=50,
    tag_seed_clients=16,
    list_rounds=1,
    loopback_bytes=256 * MiB,
    sha_bytes=64 * MiB,
    timeout=120,
)


def human(n: int) -> str:
    for unit, size in (("GiB", GiB), ("MiB", MiB), ("KiB", 1024)):
        if n >= size and n % size == 0:
            return f"{n // size} {unit}"
    return f"{n} B"


@dataclass
class Row:
    key: str
    label: str
    unit: str
    higher_is_better: bool
    values: dict[str, float | None] = field(default_factory=dict)
    details: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    samples: dict[str, list[float]] = field(default_factory=dict)
    cpu: dict[str, dict[str, float]] = field(default_factory=dict)

    def advantage(self) -> float | None:
        """>1 means Angos is better, whichever the direction of the unit."""
        va, vb = self.values.get("angos"), self.values.get("distribution")
        if not va or not vb:
            return None
        return va / vb if self.higher_is_better else vb / va


@dataclass
class Workload:
    key: str
    label: str
    unit: str
    higher_is_better: bool
    run: Callable[[Registry], Awaitable[w.Measure]]
    rounds: int = 1


class Bench:
    def __init__(
        self,
        sizes: Sizes,
        registries: list[Registry],
        wrk: str,
        only: set[str],
        workdir: str | None = None,
    ):
        self.s = sizes
        self.workdir = workdir
        self.registries = registries
        self.wrk = wrk
        self.only = only
        self.rows: list[Row] = []
        self.refs: dict[str, Any] = {}
        self.blobs: dict[str, BlobStream] = {}
        self.round = 0
        self.ref_file: str | None = None

    # ---------------------------------------------------------------- workloads

    def blob(self, key: str, seed: int) -> BlobStream:
        if key not in self.blobs:
            b = BlobStream(seed=seed, size=self.s.big)
            _ = b.digest  # hash once, outside every timed section
            self.blobs[key] = b
        return self.blobs[key]

    async def w1_push_streamed(self, reg: Registry) -> w.Measure:
        blob = self.blob(f"streamed{self.round}", 1 + 100 * self.round)
        async with w.session(4, self.s.timeout) as s:
            elapsed = w.timed()
            await w.push_streamed(s, reg.url, "bench/big", blob)
            t = elapsed()
            if await w.head_blob(s, reg.url, "bench/big", blob.digest) != blob.size:
                raise w.BenchError("pushed blob has the wrong size")
        return w.Measure(blob.size / t / w.MB, {"seconds": round(t, 3)})

    async def w2_push_chunked(self, reg: Registry) -> w.Measure:
        blob = self.blob(f"chunked{self.round}", 2 + 100 * self.round)
        async with w.session(4, self.s.timeout) as s:
            elapsed = w.timed()
            patches = await w.push_chunked(s, reg.url, "bench/big", blob, self.s.chunk)
            t = elapsed()
            if await w.head_blob(s, reg.url, "bench/big", blob.digest) != blob.size:
                raise w.BenchError("pushed blob has the wrong size")
        return w.Measure(blob.size / t / w.MB, {"seconds": round(t, 3), "patches": patches})

    async def _ensure_big(self, reg: Registry) -> BlobStream:
        blob = self.blob("streamed0", 1)
        async with w.session(2, self.s.timeout) as s:
            # Workload 1 put it there; if it failed, put it there now (untimed).
            try:
                await w.head_blob(s, reg.url, "bench/big", blob.digest)
            except w.BenchError:
                await w.push_streamed(s, reg.url, "bench/big", blob)
        return blob

    async def w3_pull(self, reg: Registry) -> w.Measure:
        blob = await self._ensure_big(reg)
        n = self.s.pull_clients
        url = f"{reg.url}/v2/bench/big/blobs/{blob.digest}"
        loop = asyncio.get_running_loop()
        with ThreadPoolExecutor(n) as pool:
            elapsed = w.timed()
            got = await asyncio.gather(
                *(
                    loop.run_in_executor(pool, w.raw_get, url, blob.size, self.s.timeout)
                    for _ in range(n)
                )
            )
            t = elapsed()
        return w.Measure(sum(got) / t / w.MB, {"seconds": round(t, 3)})

    async def w3b_pull_aiohttp(self, reg: Registry) -> w.Measure:
        blob = await self._ensure_big(reg)
        n = self.s.pull_clients
        async with w.session(n, self.s.timeout) as s:
            elapsed = w.timed()
            got = await asyncio.gather(
                *(w.pull(s, reg.url, "bench/big", blob.digest, blob.size) for _ in range(n))
            )
            t = elapsed()
        return w.Measure(sum(got) / t / w.MB, {"seconds": round(t, 3)})

    async def w4_manifest_get(self, reg: Registry) -> w.Measure:
        repo, tag = "bench/manifest", "latest"
        async with w.session(4, self.s.timeout) as s:
            await w.push_image(s, reg.url, repo, tag, random.Random(4), 4096, 8192)
            url = f"{reg.url}/v2/{repo}/manifests/{tag}"
            async with s.get(url, headers={"Accept": w.MANIFEST_ACCEPT}) as resp:
                if resp.status != 200 or resp.headers.get("Content-Type") != w.OCI_MANIFEST:
                    raise w.BenchError(f"GET manifest: {resp.status} {resp.headers}")
                await resp.read()
        return await w.wrk_get(
            self.wrk, url, self.s.wrk_seconds, self.s.wrk_connections, w.MANIFEST_ACCEPT
        )

    async def w5_small_images(self, reg: Registry) -> w.Measure:
        s_ = self.s
        async with w.session(s_.image_clients, s_.timeout) as s:

            async def one(i: int) -> None:
                rng = random.Random(5_000_000 + 1000 * self.round + i)
                await w.push_image(
                    s,
                    reg.url,
                    "bench/small",
                    f"r{self.round}-v{i}",
                    rng,
                    s_.layer_min,
                    s_.layer_max,
                )

            elapsed = w.timed()
            await w.run_pool(s_.images, s_.image_clients, one)
            t = elapsed()
        return w.Measure(s_.images / t, {"seconds": round(t, 3)})

    async def seed_tags(self, reg: Registry) -> w.Measure:
        """Tag one manifest ``tags`` times (concurrently); timed, reported as an extra row."""
        repo = "bench/tags"
        async with w.session(self.s.tag_seed_clients, self.s.timeout) as s:
            rng = random.Random(6)
            layer = await w.push_blob(s, reg.url, repo, rng.randbytes(4096))
            config = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers"}}'
            cfg = await w.push_blob(s, reg.url, repo, config)
            manifest = w.image_manifest((cfg, len(config)), [(layer, 4096)])

            # A registry that answers 503 (busy) gets the retry a client would make, so that
            # row 6 can still be measured; the count is reported beside the row.
            retries = w.Retries(budget=self.s.tags)

            async def tag(i: int) -> None:
                await w.put_manifest(s, reg.url, repo, f"t{i:05d}", manifest, retries)

            elapsed = w.timed()
            await w.run_pool(self.s.tags, self.s.tag_seed_clients, tag)
            t = elapsed()
        return w.Measure(self.s.tags / t, {"seconds": round(t, 3), "retried_503": retries.used})

    async def w6_list_tags(self, reg: Registry) -> w.Measure:
        times, pages = [], 0
        async with w.session(1, self.s.timeout) as s:
            for _ in range(self.s.list_rounds):
                elapsed = w.timed()
                seen, pages = await w.list_tags(s, reg.url, "bench/tags", self.s.tag_page)
                times.append(elapsed())
                if seen != self.s.tags:
                    raise w.BenchError(f"tags/list returned {seen} tags, expected {self.s.tags}")
        return w.Measure(
            statistics.median(times),
            {"pages": pages, "runs_s": [round(x, 4) for x in times]},
        )

    def workloads(self) -> list[Workload]:
        s = self.s
        big = human(s.big)
        return [
            Workload(
                "1",
                f"push 1 blob of {big}, streamed (POST, chunked PATCH, PUT)",
                "MB/s",
                True,
                self.w1_push_streamed,
            ),
            Workload(
                "2",
                f"push {big} in {human(s.chunk)} PATCHes with Content-Range",
                "MB/s",
                True,
                self.w2_push_chunked,
            ),
            Workload(
                "3",
                f"pull the {big} blob, {s.pull_clients} clients at once (total)",
                "MB/s",
                True,
                self.w3_pull,
            ),
            Workload(
                "3b",
                f"pull the {big} blob, {s.pull_clients} aiohttp clients (total)",
                "MB/s",
                True,
                self.w3b_pull_aiohttp,
            ),
            Workload(
                "4",
                f"GET manifest by tag, {s.wrk_connections} connections (wrk)",
                "req/s",
                True,
                self.w4_manifest_get,
            ),
            Workload(
                "5",
                f"push {s.images} small images (config + 3 layers of "
                f"{human(s.layer_min)}-{human(s.layer_max)}), {s.image_clients} clients",
                "images/s",
                True,
                self.w5_small_images,
            ),
            Workload(
                "6a",
                f"(seeding for 6) tag one manifest {s.tags:,} times, {s.tag_seed_clients} clients",
                "tags/s",
                True,
                self.seed_tags,
            ),
            Workload(
                "6",
                f"list {s.tags:,} tags with n={s.tag_page} pagination (median of {s.list_rounds})",
                "s",
                False,
                self.w6_list_tags,
            ),
        ]

    # ---------------------------------------------------------------- driving

    async def measure(self, wl: Workload, reg: Registry, row: Row) -> None:
        self_before = resource.getrusage(resource.RUSAGE_SELF)
        child_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        server_before = reg.cpu_seconds()
        wall = w.timed()
        try:
            m = await asyncio.wait_for(wl.run(reg), self.s.timeout)
        except Exception as exc:  # a wrong answer, aiohttp's errors, a timeout: note, go on
            row.errors[reg.name] = f"{type(exc).__name__}: {exc}"[:2000]
            print(f"  {reg.name}: ERROR {row.errors[reg.name]}", file=sys.stderr)
            if not reg.alive():
                print(reg.log_tail(), file=sys.stderr)
            return
        elapsed = wall()
        self_after = resource.getrusage(resource.RUSAGE_SELF)
        child_after = resource.getrusage(resource.RUSAGE_CHILDREN)

        def cpu(a: resource.struct_rusage, b: resource.struct_rusage) -> float:
            return (b.ru_utime - a.ru_utime) + (b.ru_stime - a.ru_stime)

        client = cpu(self_before, self_after) + cpu(child_before, child_after)
        server = reg.cpu_seconds() - server_before
        row.samples.setdefault(reg.name, []).append(m.value)
        row.details.setdefault(reg.name, []).append(m.detail)
        c = row.cpu.setdefault(reg.name, {"wall": 0.0, "client": 0.0, "server": 0.0})
        c["wall"] += elapsed
        c["client"] += client
        c["server"] += server
        print(f"  {reg.name}: {m.value:,.3f} {row.unit} {m.detail}", file=sys.stderr)

    def measure_refs(self, when: str) -> None:
        """Loopback and sha256, before and after the workloads; the report uses the higher
        of each (the machine's capacity when the other tenants left it the most)."""
        print(f"machine references ({when}) ...", file=sys.stderr)
        n = self.s.pull_clients
        figures = {
            "loopback_mb_s": machine.loopback_mb_s(self.s.loopback_bytes),
            "loopback_n_mb_s": machine.loopback_mb_s(self.s.loopback_bytes // n, streams=n),
            "sha256_mb_s": machine.sha256_mb_s(self.s.sha_bytes),
        }
        for key, value in figures.items():
            self.refs[f"{key}_{when}"] = value
            self.refs[key] = max(value, self.refs.get(key, 0.0))
        print(f"  {figures}", file=sys.stderr)

    def measure_row3_limits(self) -> None:
        """The machine is shared: measure the pull's limits right beside each round of it,
        in its exact shape (as many streams as clients, the blob's size on each): loopback
        TCP from a buffer, and the same file-backed bytes sent with ``sendfile``."""
        n, size = self.s.pull_clients, self.s.big
        # Rows 1 and 2 leave gigabytes of dirty pages; their writeback would otherwise run
        # on the same two cores during whichever pull or reference comes first.
        os.sync()
        if self.ref_file is None:
            fd, self.ref_file = tempfile.mkstemp(prefix="angos-bench-sendfile-", dir=self.workdir)
            os.close(fd)
            machine.write_reference_file(self.ref_file, size)
        self.refs.setdefault("loopback_n_mb_s_at_row3", []).append(
            machine.loopback_mb_s(size, streams=n)
        )
        self.refs.setdefault("sendfile_n_mb_s_at_row3", []).append(
            machine.sendfile_mb_s(self.ref_file, streams=n)
        )

    async def run(self, rounds: int) -> None:
        try:
            await self._run(rounds)
        finally:
            if self.ref_file is not None:
                os.unlink(self.ref_file)

    async def _run(self, rounds: int) -> None:
        self.measure_refs("before")
        for i, wl in enumerate(self.workloads()):
            if self.only and wl.key.rstrip("ab") not in self.only:
                continue
            row = Row(wl.key, wl.label, wl.unit, wl.higher_is_better)
            self.rows.append(row)
            # Seeding is a setup step measured once; listing repeats inside the workload.
            n = 1 if wl.key in ("6a", "6") else rounds
            for r in range(n):
                self.round = r
                if wl.key == "3":
                    self.measure_row3_limits()
                # Alternate who goes first, so neither always meets a warmer page cache or
                # a quieter machine.
                order = self.registries if (i + r) % 2 == 0 else list(reversed(self.registries))
                print(f"[{wl.key}] {wl.label} (round {r + 1}/{n})", file=sys.stderr)
                for reg in order:
                    await self.measure(wl, reg, row)
            for name, values in row.samples.items():
                if name not in row.errors:
                    row.values[name] = statistics.median(values)
        self.measure_refs("after")
        rss = Row("7", "peak RSS of the server over the whole run (VmHWM)", "MiB", False)
        for reg in self.registries:
            rss.values[reg.name] = reg.peak_rss_kib() / 1024 or None
        self.rows.append(rss)


# -------------------------------------------------------------------- output


def fmt(v: float | None) -> str:
    if v is None:
        return "error"
    if v >= 100:
        return f"{v:,.0f}"
    if v >= 10:
        return f"{v:,.1f}"
    return f"{v:,.3f}" if v < 1 else f"{v:,.2f}"


COLUMNS = {"angos": "Angos", "distribution": "Distribution 2.8"}


def render(bench: Bench, names: list[str], meta: dict[str, Any]) -> str:
    """The markdown report: the table, the machine references, CPU use, errors."""

    def cell(r: Row, n: str) -> str:
        if n not in names:
            return "not run"
        return fmt(r.values.get(n))

    lines = [
        "| # | workload | unit | Angos | Distribution 2.8 | Angos advantage (>1 = Angos better) |",
        "|---|---|---|---:|---:|---:|",
    ]
    for r in bench.rows:
        unit = r.unit + (" (higher is better)" if r.higher_is_better else " (lower is better)")
        adv = r.advantage()
        ratio = "-" if adv is None else f"{adv:.2f}x"
        if adv is not None:
            ratio += " (A/D)" if r.higher_is_better else " (D/A)"
        lines.append(
            f"| {r.key} | {r.label} | {unit} | {cell(r, 'angos')} | "
            f"{cell(r, 'distribution')} | {ratio} |"
        )
    out = ["\n".join(lines), ""]
    out.append(
        "The advantage column is Angos/Distribution for higher-is-better rows (A/D) and "
        "Distribution/Angos for lower-is-better rows (D/A): above 1 Angos is better."
    )
    out.append("")
    refs = bench.refs
    out.append("Machine references, measured in this run:")
    out.append(
        f"- loopback TCP, 1 stream between 2 processes: {refs['loopback_mb_s']:,.0f} MB/s "
        f"(before {refs.get('loopback_mb_s_before', 0):,.0f}, "
        f"after {refs.get('loopback_mb_s_after', 0):,.0f}; the higher is used)"
    )
    clients = bench.s.pull_clients
    out.append(
        f"- loopback TCP, {clients} streams at once, one receiving thread each: "
        f"{refs['loopback_n_mb_s']:,.0f} MB/s "
        f"(before {refs.get('loopback_n_mb_s_before', 0):,.0f}, "
        f"after {refs.get('loopback_n_mb_s_after', 0):,.0f}; the higher is used)"
    )
    out.append(
        f"- sha256 (hashlib, 1 thread): {refs['sha256_mb_s']:,.0f} MB/s "
        f"(before {refs.get('sha256_mb_s_before', 0):,.0f}, "
        f"after {refs.get('sha256_mb_s_after', 0):,.0f}; the higher is used)"
    )
    by_key = {r.key: r for r in bench.rows}
    beside = refs.get("loopback_n_mb_s_at_row3")
    ceiling = refs.get("sendfile_n_mb_s_at_row3")
    if beside and ceiling:
        med, top = statistics.median(beside), statistics.median(ceiling)
        each = human(bench.s.big)
        out.append(
            f"- loopback TCP, {clients} streams of {each} each, measured right before each "
            f"round of row 3: median {med:,.0f} MB/s"
        )
        out.append(
            f"- the same {clients} streams from a {each} file in the page cache with "
            f"sendfile, no HTTP (what any server can do for row 3), measured beside it: "
            f"median {top:,.0f} MB/s"
        )
        for n in names:
            v = by_key["3"].values.get(n) if "3" in by_key else None
            if v:
                out.append(
                    f"- row 3, {COLUMNS[n]}: {100 * v / med:.0f}% of the loopback measured "
                    f"beside it (the issue's target: >= 80%); {100 * v / top:.0f}% of "
                    "sendfile beside it"
                )
    for key, ref, what in (
        ("3", "loopback_mb_s", "loopback (1 stream)"),
        ("3", "loopback_n_mb_s", f"loopback ({clients} streams)"),
        ("3b", "loopback_mb_s", "loopback (1 stream)"),
        ("1", "sha256_mb_s", "sha256"),
        ("2", "sha256_mb_s", "sha256"),
    ):
        row = by_key.get(key)
        for n in names:
            v = row.values.get(n) if row else None
            if v:
                pct = 100 * v / refs[ref]
                out.append(f"- row {key}, {COLUMNS[n]}: {pct:.0f}% of {what}")
    out.append("")
    out.append(
        "CPU seconds spent during each row, summed over rounds (client = this process and "
        "wrk; server = the registry's process tree). Client and server share the machine's "
        "cores, so the client's share is what the server could not use:"
    )
    out.append("")
    out.append(
        "| # | "
        + " | ".join(f"{COLUMNS[n]}: wall s | client CPU s | server CPU s" for n in names)
        + " |"
    )
    out.append("|---|" + "---:|---:|---:|" * len(names))
    for r in bench.rows:
        if not r.cpu:
            continue
        cells = []
        for n in names:
            c = r.cpu.get(n)
            cells.append(
                " | ".join(
                    [f"{c['wall']:.2f}", f"{c['client']:.2f}", f"{c['server']:.2f}"]
                    if c
                    else ["-", "-", "-"]
                )
            )
        out.append(f"| {r.key} | " + " | ".join(cells) + " |")
    retried = [
        (r.key, n, sum(d.get("retried_503", 0) for d in ds))
        for r in bench.rows
        for n, ds in r.details.items()
    ]
    retried = [x for x in retried if x[2]]
    if retried:
        out.append("")
        out.append("Busy answers (503) retried by the client, included in the row's time:")
        out.extend(f"- row {k}, {COLUMNS[n]}: {c} retries" for k, n, c in retried)
    errors = [(r.key, n, e) for r in bench.rows for n, e in r.errors.items()]
    if errors:
        out.append("")
        out.append("Errors:")
        out.extend(f"- row {k}, {COLUMNS[n]}: {e}" for k, n, e in errors)
    out.append("")
    out.append("Run: " + ", ".join(f"{k}={v}" for k, v in meta.items()))
    return "\n".join(out)


# -------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="bench/run", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--quick", action="store_true", help="small sizes: a smoke test, not figures")
    p.add_argument(
        "--registries",
        default="angos,distribution",
        help="comma-separated subset of angos,distribution (default: both)",
    )
    p.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="repeat workloads 1-5 this many times and report the median",
    )
    p.add_argument("--only", default="", help="comma-separated workload numbers, e.g. 1,3")
    p.add_argument("--angos-exe", default="", help="the angos executable (default .venv/bin/angos)")
    p.add_argument("--angos-toml", default="", help="extra TOML appended to Angos' config")
    p.add_argument(
        "--angos-wrap",
        default="",
        help="prefix for Angos' command, e.g. 'py-spy record -o prof.svg --'",
    )
    p.add_argument("--workdir", default=None, help="where the temporary stores go (default TMPDIR)")
    p.add_argument("--keep", action="store_true", help="keep the temporary stores and logs")
    p.add_argument("--json", default="", help="also write the raw results to this file")
    p.add_argument("--markdown", default="", help="also write the table to this file")
    return p.parse_args(argv)


def _git_revision() -> str:
    """The commit the Angos under test was started from, '+dirty' with local changes."""
    root = Path(__file__).resolve().parent.parent
    try:
        rev = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            [
                "git",
                "-C",
                str(root),
                "status",
                "--porcelain",
                "--untracked-files=no",
                "--",
                "angos_core",
                "plugins",
            ],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return rev + ("+dirty" if dirty else "")


def _install_loop() -> str:
    try:
        import uvloop
    except ImportError:
        return "asyncio"
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return "uvloop"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = QUICK if args.quick else FULL
    names = [n.strip() for n in args.registries.split(",") if n.strip()]
    for n in names:
        if n not in ("angos", "distribution"):
            raise SystemExit(f"unknown registry {n!r}; use angos and/or distribution")
    tools = {"wrk": "wrk"}
    if "distribution" in names:
        tools["docker-registry"] = "docker-registry"
    paths = ensure_tools(tools)
    loop_name = _install_loop()

    registries: list[Registry] = []

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_term)
    started = datetime.now(UTC)
    load_before = os.getloadavg()[0]
    revision = _git_revision()
    try:
        for n in names:
            workdir = make_workdir(args.workdir, n)
            if n == "angos":
                reg: Registry = Angos(
                    n,
                    workdir,
                    executable=args.angos_exe,
                    extra_toml=args.angos_toml,
                    wrap=shlex.split(args.angos_wrap),
                )
            else:
                reg = Distribution(n, workdir, binary=paths["docker-registry"])
            registries.append(reg)
            reg.start()
            print(
                f"{n}: {reg.url} (pid {reg.proc.pid if reg.proc else '?'}, store {reg.store})",
                file=sys.stderr,
            )
        only = {x.strip() for x in args.only.split(",") if x.strip()}
        bench = Bench(sizes, registries, paths["wrk"], only, args.workdir)
        asyncio.run(bench.run(args.rounds))
        meta = {
            "date": started.strftime("%Y-%m-%d %H:%M UTC"),
            "angos commit": revision,
            "mode": "quick" if args.quick else "full",
            "rounds": args.rounds,
            "client loop": loop_name,
            "load average (1 min) before/after": f"{load_before:.2f}/{os.getloadavg()[0]:.2f}",
            **machine.describe(),
        }
        # Report before the clean-up: removing two stores of 10,000 tags can take a while.
        report(bench, names, meta, args.markdown, args.json, sizes)
        return 1 if any(r.errors for r in bench.rows) else 0
    except KeyboardInterrupt:
        print("interrupted; stopping the registries", file=sys.stderr)
        return 130
    finally:
        for reg in registries:
            reg.stop()
            if args.keep:
                print(f"kept {reg.workdir}", file=sys.stderr)
            else:
                shutil.rmtree(reg.workdir, ignore_errors=True)


def report(
    bench: Bench,
    names: list[str],
    meta: dict[str, Any],
    markdown: str,
    json_path: str,
    sizes: Sizes,
) -> None:
    text = render(bench, names, meta)
    print(text, flush=True)
    if markdown:
        Path(markdown).write_text(text + "\n")
    if json_path:
        results = {
            "meta": meta,
            "sizes": asdict(sizes),
            "refs": bench.refs,
            "rows": [asdict(r) for r in bench.rows],
        }
        Path(json_path).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        raise SystemExit(main())

"""What bench/auth and bench/policy share: ``wrk`` GETting one manifest by tag under a few
configurations (rows), the first row the baseline the others are a ratio to.

Each round measures every row once, in alternating order from round to round (so neither
always runs on a warmer machine); a row's ratio is taken against the baseline of the same
round, and the table reports the median of those ratios. ``main`` runs a bench's servers
and writes its table (``--markdown``) and raw figures (``--json``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import statistics
import sys
from collections.abc import Awaitable, Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import machine
from bench import workloads as w
from bench.run import _git_revision
from bench.servers import Angos, ensure_tools, make_workdir

REPO, TAG = "bench/manifest", "latest"


@dataclass(frozen=True)
class Row:
    name: str
    #: The table's second column: the configuration or credential the row measures.
    label: str
    server: Angos
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Result:
    samples: dict[str, list[float]] = field(default_factory=dict)
    #: Per non-baseline row, one ratio to the baseline per round.
    ratios: dict[str, list[float]] = field(default_factory=dict)
    details: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    server_cpu: dict[str, list[float]] = field(default_factory=dict)


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seconds", type=int, default=10, help="wrk's duration per row (default 10)")
    p.add_argument("--connections", type=int, default=64, help="wrk's connections (default 64)")
    p.add_argument("--rounds", type=int, default=1, help="repeat every row (alternating order)")
    p.add_argument("--angos-exe", default="", help="the angos executable (default .venv/bin/angos)")
    p.add_argument("--workdir", default=None, help="where the temporary stores go (default TMPDIR)")
    p.add_argument("--json", default="", help="also write the raw results to this file")
    p.add_argument("--markdown", default="", help="also write the table to this file")


def parser(prog: str, doc: str | None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_args(p)
    return p


def server(args: argparse.Namespace, name: str, extra_toml: str = "", **kw: Any) -> Angos:
    """An ``angos serve`` on a fresh store under ``--workdir`` (started by ``main``)."""
    workdir = make_workdir(args.workdir, name)
    return Angos(name, workdir, executable=args.angos_exe, extra_toml=extra_toml, **kw)


async def check_get(url: str, headers: dict[str, str]) -> None:
    """One GET with the row's headers must be the manifest (not a 401 or a 503)."""
    async with (
        w.session(1, 60) as s,
        s.get(url, headers={"Accept": w.MANIFEST_ACCEPT, **headers}) as resp,
    ):
        await w._expect(resp, 200, what=f"GET {url}")
        if resp.headers.get("Content-Type") != w.OCI_MANIFEST:
            raise w.BenchError(f"GET manifest: Content-Type {resp.headers.get('Content-Type')}")
        await resp.read()


async def measure(args: argparse.Namespace, wrk: str, rows: list[Row]) -> Result:
    """Every row once a round, the order reversed every other round."""
    baseline = rows[0].name
    res = Result()
    for r in range(args.rounds):
        order = rows if r % 2 == 0 else list(reversed(rows))
        round_rps: dict[str, float] = {}
        for row in order:
            url = f"{row.server.url}/v2/{REPO}/manifests/{TAG}"
            await check_get(url, row.headers)
            print(f"[{row.name}] round {r + 1}/{args.rounds}", file=sys.stderr)
            cpu_before = row.server.cpu_seconds()
            m = await w.wrk_get(
                wrk, url, args.seconds, args.connections, w.MANIFEST_ACCEPT, row.headers
            )
            res.server_cpu.setdefault(row.name, []).append(row.server.cpu_seconds() - cpu_before)
            round_rps[row.name] = m.value
            res.samples.setdefault(row.name, []).append(m.value)
            res.details.setdefault(row.name, []).append(m.detail)
            print(f"  {m.value:,.0f} req/s {m.detail}", file=sys.stderr)
        for row in rows[1:]:
            res.ratios.setdefault(row.name, []).append(round_rps[row.name] / round_rps[baseline])
    return res


def render(
    res: Result, args: argparse.Namespace, rows: list[Row], *, column: str, target: float
) -> str:
    """The table: one line a row; ``column`` names the second column."""
    lines = [
        f"| row | {column} | req/s (median of {args.rounds}) | server CPU ms/1000 req "
        f"| ratio to {rows[0].name} (median of the rounds' ratios) | target >= {target} |",
        "|---|---|---:|---:|---:|---|",
    ]
    for row in rows:
        samples = res.samples[row.name]
        total = sum(samples) * args.seconds
        cpu_ms = 1e6 * sum(res.server_cpu[row.name]) / total if total else 0.0
        if row is rows[0]:
            ratio, ok = "1.00 (the baseline)", "-"
        else:
            value = statistics.median(res.ratios[row.name])
            ratio, ok = f"{value:.2f}", "met" if value >= target else "MISSED"
        lines.append(
            f"| {row.name} | {row.label} | {statistics.median(samples):,.0f} | {cpu_ms:.0f} "
            f"| {ratio} | {ok} |"
        )
    return "\n".join(lines)


def main(
    args: argparse.Namespace,
    servers: Callable[[ExitStack], Iterator[Angos]],
    rows: Callable[[], Awaitable[list[Row]]],
    *,
    column: str,
    target: float,
) -> int:
    """Start the servers ``servers`` yields (each stopped and its store removed at the end;
    other resources go on the stack), seed and make the rows, measure, print and write."""
    wrk = ensure_tools({"wrk": "wrk"})["wrk"]

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_term)
    started = datetime.now(UTC)
    load_before = os.getloadavg()[0]
    with ExitStack() as stack:
        try:
            for reg in servers(stack):
                stack.callback(shutil.rmtree, reg.workdir, ignore_errors=True)
                stack.callback(reg.stop)
                reg.start()
                print(f"{reg.name}: {reg.url} (store {reg.store})", file=sys.stderr)

            async def run() -> tuple[list[Row], Result]:
                made = await rows()
                return made, await measure(args, wrk, made)

            made, res = asyncio.run(run())
        except KeyboardInterrupt:
            print("interrupted; stopping the registries", file=sys.stderr)
            return 130
    meta = {
        "date": started.strftime("%Y-%m-%d %H:%M UTC"),
        "angos commit": _git_revision(),
        "wrk": f"-c{args.connections} -d{args.seconds}s",
        "rounds": args.rounds,
        "load average (1 min) before/after": f"{load_before:.2f}/{os.getloadavg()[0]:.2f}",
        **machine.describe(),
    }
    text = render(res, args, made, column=column, target=target)
    text += "\n\nRun: " + ", ".join(f"{k}={v}" for k, v in meta.items())
    print(text, flush=True)
    if args.markdown:
        Path(args.markdown).write_text(text + "\n")
    if args.json:
        Path(args.json).write_text(json.dumps({"meta": meta, **res.__dict__}, indent=2) + "\n")
    return 0

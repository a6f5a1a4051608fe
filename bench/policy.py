"""What an access policy costs: manifest GET by tag, no policy against a 20-rule policy.

    bench/policy [--seconds 10] [--connections 64] [--rounds 1] [--markdown FILE] [--json FILE]

Two ``angos serve`` processes run at once on fresh fs stores on 127.0.0.1, their configs
the same but for ``[global.access_policy]``: none, or ``default = "deny"`` with twenty CEL
rules (one letting the harness's readiness probe reach ``GET /v2/``, eighteen of
:mod:`bench.policy_cel`, none of which matches the benchmark's request, then the one that
allows it), so every request is one evaluation of the whole
policy or its memoised decision. Each row is ``wrk`` GETting one manifest by tag,
anonymously; the policy row is reported as a ratio to the no-policy row of the same round
(target: at least 0.9), the rows alternating their order from round to round. See
bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import signal
import statistics
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import machine
from bench import workloads as w
from bench.auth import check_get
from bench.policy_cel import RULES
from bench.run import _git_revision
from bench.servers import Angos, ensure_tools, make_workdir

REPO, TAG = "bench/manifest", "latest"
ROWS = ["none", "policy"]
LABELS = {"none": "no access policy", "policy": "[global.access_policy], 20 rules"}
TARGET = 0.9
#: The first rule: the harness waits for ``GET /v2/`` (first, so that the rules that read
#: ``request.namespace`` without ``has()`` never fail it).
PROBE = "request.action == 'get-api-version'"
#: The twentieth rule: the loopback client may do anything under bench/ (push the seed,
#: pull it); the nineteen before it never match the benchmark's request.
ALLOW = "identity.client_ip == '127.0.0.1' && has(request.namespace) && " + (
    "request.namespace.startsWith('bench/')"
)


def policy_toml() -> str:
    rules = [PROBE, *RULES[:18], ALLOW]
    assert len(rules) == 20
    body = ",\n".join(f"  {json.dumps(rule)}" for rule in rules)
    return f'\n[global.access_policy]\ndefault = "deny"\nrules = [\n{body},\n]\n'


@dataclass
class Result:
    samples: dict[str, list[float]] = field(default_factory=dict)
    ratios: list[float] = field(default_factory=list)
    details: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    server_cpu: dict[str, list[float]] = field(default_factory=dict)


async def run(args: argparse.Namespace, wrk: str, servers: dict[str, Angos]) -> Result:
    for reg in servers.values():
        async with w.session(4, 120) as s:
            await w.push_image(s, reg.url, REPO, TAG, random.Random(4), 4096, 8192)
    res = Result()
    for r in range(args.rounds):
        order = ROWS if r % 2 == 0 else list(reversed(ROWS))
        round_rps: dict[str, float] = {}
        for name in order:
            reg = servers[name]
            url = f"{reg.url}/v2/{REPO}/manifests/{TAG}"
            await check_get(url, {})
            print(f"[{name}] round {r + 1}/{args.rounds}", file=sys.stderr)
            cpu_before = reg.cpu_seconds()
            m = await w.wrk_get(wrk, url, args.seconds, args.connections, w.MANIFEST_ACCEPT, {})
            res.server_cpu.setdefault(name, []).append(reg.cpu_seconds() - cpu_before)
            round_rps[name] = m.value
            res.samples.setdefault(name, []).append(m.value)
            res.details.setdefault(name, []).append(m.detail)
            print(f"  {m.value:,.0f} req/s {m.detail}", file=sys.stderr)
        res.ratios.append(round_rps["policy"] / round_rps["none"])
    return res


def render(res: Result, args: argparse.Namespace, meta: dict[str, Any]) -> str:
    lines = [
        f"| row | config | req/s (median of {args.rounds}) | server CPU ms/1000 req "
        f"| ratio to no policy (median of the rounds' ratios) | target >= {TARGET} |",
        "|---|---|---:|---:|---:|---|",
    ]
    for name in ROWS:
        rps = statistics.median(res.samples[name])
        total = sum(res.samples[name]) * args.seconds
        cpu_ms = 1e6 * sum(res.server_cpu[name]) / total if total else 0.0
        if name == "none":
            ratio, ok = "1.00 (the baseline)", "-"
        else:
            value = statistics.median(res.ratios)
            ratio, ok = f"{value:.2f}", "met" if value >= TARGET else "MISSED"
        lines.append(f"| {name} | {LABELS[name]} | {rps:,.0f} | {cpu_ms:.0f} | {ratio} | {ok} |")
    lines.append("")
    lines.append("Run: " + ", ".join(f"{k}={v}" for k, v in meta.items()))
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="bench/policy",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--seconds", type=int, default=10, help="wrk's duration per row (default 10)")
    p.add_argument("--connections", type=int, default=64, help="wrk's connections (default 64)")
    p.add_argument("--rounds", type=int, default=1, help="repeat every row (alternating order)")
    p.add_argument("--angos-exe", default="", help="the angos executable (default .venv/bin/angos)")
    p.add_argument("--workdir", default=None, help="where the temporary stores go (default TMPDIR)")
    p.add_argument("--json", default="", help="also write the raw results to this file")
    p.add_argument("--markdown", default="", help="also write the table to this file")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    wrk = ensure_tools({"wrk": "wrk"})["wrk"]

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_term)
    started = datetime.now(UTC)
    load_before = os.getloadavg()[0]
    servers: dict[str, Angos] = {}
    try:
        for name, extra in (("none", ""), ("policy", policy_toml())):
            reg = Angos(
                name,
                make_workdir(args.workdir, name),
                executable=args.angos_exe,
                extra_toml=extra,
            )
            servers[name] = reg
            reg.start()
            print(f"{name}: {reg.url} (store {reg.store})", file=sys.stderr)
        res = asyncio.run(run(args, wrk, servers))
        meta = {
            "date": started.strftime("%Y-%m-%d %H:%M UTC"),
            "angos commit": _git_revision(),
            "wrk": f"-c{args.connections} -d{args.seconds}s",
            "rounds": args.rounds,
            "load average (1 min) before/after": f"{load_before:.2f}/{os.getloadavg()[0]:.2f}",
            **machine.describe(),
        }
        text = render(res, args, meta)
        print(text, flush=True)
        if args.markdown:
            Path(args.markdown).write_text(text + "\n")
        if args.json:
            Path(args.json).write_text(json.dumps({"meta": meta, **res.__dict__}, indent=2) + "\n")
        return 0
    except KeyboardInterrupt:
        print("interrupted; stopping the registries", file=sys.stderr)
        return 130
    finally:
        for reg in servers.values():
            reg.stop()
            shutil.rmtree(reg.workdir, ignore_errors=True)


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        raise SystemExit(main())

"""What authentication costs: manifest GET by tag, anonymous against each credential kind.

    bench/auth [--seconds 10] [--connections 64] [--rounds 1] [--markdown FILE] [--json FILE]

Two ``angos serve`` processes run at once on fresh fs stores on 127.0.0.1, their configs
the same but for ``[auth]``: one anonymous, one with an ``[auth.identity.<name>]`` user
(an Argon2id hash from ``angos hash-password``), the token service and an ``[auth.oidc]``
entry trusting a local issuer (:mod:`angos_core.testing.oidc_issuer`). Each row is ``wrk``
GETting one manifest by tag; the authenticated rows send the same ``Authorization`` header
with every request, as a logged-in client does:

- ``anonymous``: no header, to the anonymous server;
- ``basic``: the user's password (the verified-credential cache makes all but the first
  request a lookup, not an Argon2id verification);
- ``bearer``: a token from the registry's token service (``GET /token``, pull scope);
- ``bearer-oidc``: a token the local OIDC issuer signed (RS256).

Each authenticated row is reported as a ratio to the anonymous row of the same round; the
rows alternate their order from round to round. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import random
import secrets
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import machine
from bench import workloads as w
from bench.run import _git_revision
from bench.servers import Angos, ensure_tools, make_workdir

REPO, TAG = "bench/manifest", "latest"
USER, SERVICE, AUDIENCE = "bench", "angos", "angos-bench"
ROWS = ["anonymous", "basic", "bearer", "bearer-oidc"]
LABELS = {
    "anonymous": "anonymous (no [auth])",
    "basic": "Basic, an [auth.identity] user (Argon2id)",
    "bearer": "Bearer, a token from the token service",
    "bearer-oidc": "Bearer, an OIDC token (RS256)",
}


def hash_password(angos_exe: str, password: str) -> str:
    """The hash ``angos hash-password`` prints for ``password`` (read from stdin)."""
    out = subprocess.run(
        [angos_exe, "hash-password"],
        input=password + "\n",
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return out.stdout.strip()


def auth_toml(password_hash: str, secret_key: str, issuer: str) -> str:
    return (
        f"\n[auth.identity.{USER}]\n"
        f'username = "{USER}"\n'
        f'password = "{password_hash}"\n\n'
        "[auth.token_service]\n"
        f'secret_key = "{secret_key}"\n'
        f'service = "{SERVICE}"\n\n'
        "[auth.oidc.bench-ci]\n"
        f'issuer = "{issuer}"\n'
        f'required_audience = "{AUDIENCE}"\n'
    )


@dataclass
class Result:
    samples: dict[str, list[float]] = field(default_factory=dict)
    ratios: dict[str, list[float]] = field(default_factory=dict)
    details: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    server_cpu: dict[str, list[float]] = field(default_factory=dict)


def basic_header(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


async def seed(anon: Angos, authed: Angos, basic: str) -> str:
    """Push the manifest to both (untimed); return a pull token from the token service."""
    for reg, headers in ((anon, None), (authed, {"Authorization": basic})):
        async with w.session(4, 120, headers) as s:
            await w.push_image(s, reg.url, REPO, TAG, random.Random(4), 4096, 8192)
    async with w.session(1, 60, {"Authorization": basic}) as s:
        url = f"{authed.url}/token?service={SERVICE}&scope=repository:{REPO}:pull"
        async with s.get(url) as resp:
            await w._expect(resp, 200, what="GET /token")
            body = await resp.json()
    return str(body["token"])


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


async def run(
    args: argparse.Namespace, wrk: str, anon: Angos, authed: Angos, oidc: Any, password: str
) -> Result:
    basic = basic_header(USER, password)
    token = await seed(anon, authed, basic)
    # Valid for an hour, longer than any run; the verified-token cache holds one 60 s, so a
    # round longer than that also measures a re-verification, as a real client meets one.
    exp = int(datetime.now(UTC).timestamp()) + 3600
    oidc_token = oidc.token(sub="bench-job", aud=AUDIENCE, exp=exp)
    rows = {
        "anonymous": (anon, {}),
        "basic": (authed, {"Authorization": basic}),
        "bearer": (authed, {"Authorization": f"Bearer {token}"}),
        "bearer-oidc": (authed, {"Authorization": f"Bearer {oidc_token}"}),
    }
    res = Result()
    for r in range(args.rounds):
        order = ROWS if r % 2 == 0 else list(reversed(ROWS))
        round_rps: dict[str, float] = {}
        for name in order:
            reg, headers = rows[name]
            url = f"{reg.url}/v2/{REPO}/manifests/{TAG}"
            await check_get(url, headers)
            print(f"[{name}] round {r + 1}/{args.rounds}", file=sys.stderr)
            cpu_before = reg.cpu_seconds()
            m = await w.wrk_get(
                wrk, url, args.seconds, args.connections, w.MANIFEST_ACCEPT, headers
            )
            res.server_cpu.setdefault(name, []).append(reg.cpu_seconds() - cpu_before)
            round_rps[name] = m.value
            res.samples.setdefault(name, []).append(m.value)
            res.details.setdefault(name, []).append(m.detail)
            print(f"  {m.value:,.0f} req/s {m.detail}", file=sys.stderr)
        for name in ROWS[1:]:
            res.ratios.setdefault(name, []).append(round_rps[name] / round_rps["anonymous"])
    return res


def render(res: Result, args: argparse.Namespace, meta: dict[str, Any]) -> str:
    lines = [
        f"| row | credential | req/s (median of {args.rounds}) | server CPU ms/1000 req "
        "| ratio to anonymous (median of the rounds' ratios) | target >= 0.8 |",
        "|---|---|---:|---:|---:|---|",
    ]
    for name in ROWS:
        rps = statistics.median(res.samples[name])
        total = sum(res.samples[name]) * args.seconds
        cpu_ms = 1e6 * sum(res.server_cpu[name]) / total if total else 0.0
        if name == "anonymous":
            ratio, ok = "1.00 (the baseline)", "-"
        else:
            value = statistics.median(res.ratios[name])
            ratio, ok = f"{value:.2f}", "met" if value >= 0.8 else "MISSED"
        lines.append(f"| {name} | {LABELS[name]} | {rps:,.0f} | {cpu_ms:.0f} | {ratio} | {ok} |")
    lines.append("")
    lines.append("Run: " + ", ".join(f"{k}={v}" for k, v in meta.items()))
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="bench/auth", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--seconds", type=int, default=10, help="wrk's duration per row (default 10)")
    p.add_argument("--connections", type=int, default=64, help="wrk's connections (default 64)")
    p.add_argument("--rounds", type=int, default=1, help="repeat every row (alternating order)")
    p.add_argument("--angos-exe", default="", help="the angos executable (default .venv/bin/angos)")
    p.add_argument("--angos-wrap", default="", help="prefix for the authenticated server's command")
    p.add_argument("--workdir", default=None, help="where the temporary stores go (default TMPDIR)")
    p.add_argument("--json", default="", help="also write the raw results to this file")
    p.add_argument("--markdown", default="", help="also write the table to this file")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    from angos_core.testing.oidc_issuer import OidcIssuer  # needs angos-core[testing]

    args = parse_args(argv)
    wrk = ensure_tools({"wrk": "wrk"})["wrk"]

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_term)
    started = datetime.now(UTC)
    load_before = os.getloadavg()[0]
    issuer = OidcIssuer(algorithms=("RS256",))
    issuer.start()
    servers: list[Angos] = []
    try:
        anon = Angos("anonymous", make_workdir(args.workdir, "anon"), executable=args.angos_exe)
        password = secrets.token_urlsafe(18)
        password_hash = hash_password(anon.exe(), password)
        secret_key = base64.b64encode(secrets.token_bytes(32)).decode()
        authed = Angos(
            "authenticated",
            make_workdir(args.workdir, "auth"),
            executable=args.angos_exe,
            extra_toml=auth_toml(password_hash, secret_key, issuer.issuer),
            wrap=shlex.split(args.angos_wrap),
        )
        for reg in (anon, authed):
            servers.append(reg)
            reg.start()
            print(f"{reg.name}: {reg.url} (store {reg.store})", file=sys.stderr)
        res = asyncio.run(run(args, wrk, anon, authed, issuer, password))
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
        for reg in servers:
            reg.stop()
            shutil.rmtree(reg.workdir, ignore_errors=True)
        issuer.close()


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        raise SystemExit(main())

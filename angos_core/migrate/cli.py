"""``angos migrate``: its options, and running passes or a verification on two configs."""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from angos_core.config import AngosConfig
from angos_core.errors import ConfigError
from angos_core.migrate import DEFAULT_JOBS
from angos_core.registry import Stores

if TYPE_CHECKING:
    from angos_core.migrate.progress import Progress
    from angos_core.migrate.report import PassReport

#: Differences found (``--verify``) or objects that failed to copy.
EXIT_DIFFERENT = 1
DEFAULT_PASSES = 2


def add_migrate_command(sub: Any, load: Callable[[str | None], AngosConfig]) -> None:
    cmd = sub.add_parser(
        "migrate",
        help="copy every blob, manifest, link and tag to the stores of another config "
        "(online, resumable; see docs/operations.md)",
    )
    cmd.add_argument("--from", dest="source", required=True, help="TOML config of the old stores")
    cmd.add_argument("--to", dest="target", required=True, help="TOML config of the new stores")
    cmd.add_argument(
        "--jobs",
        type=int,
        default=DEFAULT_JOBS,
        help=f"objects copied at once (default {DEFAULT_JOBS})",
    )
    cmd.add_argument(
        "--passes",
        type=int,
        default=DEFAULT_PASSES,
        help=f"copy passes at most (default {DEFAULT_PASSES}): each pass after the first "
        "catches up with pushes made meanwhile; stops early once a pass copies nothing",
    )
    cmd.add_argument(
        "--max-writes-per-sec",
        type=float,
        default=0,
        metavar="N",
        help="at most N objects (blobs, links, tags, bodies) written to the destination a "
        "second, across all jobs; spares a registry still serving from the source, or a "
        "rate-limited bucket (default 0: no limit)",
    )
    cmd.add_argument("--verify", action="store_true", help="compare both sides, copy nothing")
    cmd.add_argument(
        "--deep", action="store_true", help="with --verify: re-hash every destination blob"
    )
    cmd.add_argument("--json", action="store_true", help="print the summary as JSON")
    cmd.set_defaults(func=lambda args: _main(args, load))


def _main(args: argparse.Namespace, load: Callable[[str | None], AngosConfig]) -> int:
    if args.jobs < 1:
        raise ConfigError("--jobs", f"must be at least 1, got {args.jobs}")
    if args.passes < 1:
        raise ConfigError("--passes", f"must be at least 1, got {args.passes}")
    if args.max_writes_per_sec < 0 or not math.isfinite(args.max_writes_per_sec):
        raise ConfigError(
            "--max-writes-per-sec", f"must be 0 (no limit) or more, got {args.max_writes_per_sec:g}"
        )
    if args.deep and not args.verify:
        raise ConfigError("--deep", "only applies with --verify")
    source, target = load(args.source), load(args.target)
    return asyncio.run(_run(source, target, args))


async def _run(source: AngosConfig, target: AngosConfig, args: argparse.Namespace) -> int:
    # The copy and its progress bar are imported by the command that runs them, not by
    # every `angos` process (which builds this command's options).
    from angos_core.migrate.progress import Progress

    src = Stores.from_config(source)
    dst = Stores.from_config(target)
    await src.open()
    try:
        await dst.open()
        try:
            progress = Progress()
            live = target.migration is not None
            if args.verify:
                return await _verify(src, dst, args, progress, live)
            return await _copy(src, dst, args, progress, live)
        finally:
            await dst.aclose()
    finally:
        await src.aclose()


async def _copy(
    src: Stores, dst: Stores, args: argparse.Namespace, progress: Progress, live: bool
) -> int:
    from angos_core.migrate.copy import Migration
    from angos_core.migrate.live import CopyTarget

    # Live (the new config reads through the old stores): the new side serves writes, so
    # the copy never overwrites what it holds nor creates what it deleted.
    meta = CopyTarget(dst.meta) if live else dst.meta
    migration = Migration(
        src.blobs,
        src.meta,
        dst.blobs,
        meta,
        jobs=args.jobs,
        progress=progress,
        overwrite=not live,
        max_writes_per_sec=args.max_writes_per_sec,
    )
    reports: list[PassReport] = []
    for number in range(1, args.passes + 1):
        report = await migration.run()
        reports.append(report)
        if not args.json:
            print(f"pass {number}: {report.line()}", flush=True)
        for failure in report.failures:
            print(f"angos migrate: failed: {failure}", file=sys.stderr)
        if report.total_copied == 0 or report.total_failed:
            break
    failed = reports[-1].total_failed
    if args.json:
        summary = {
            "passes": [r.as_json() for r in reports],
            "bytes": sum(r.bytes_copied for r in reports),
            "seconds": round(sum(r.seconds for r in reports), 3),
            "failed": failed,
        }
        print(json.dumps(summary, indent=2))
    return EXIT_DIFFERENT if failed else 0


async def _verify(
    src: Stores, dst: Stores, args: argparse.Namespace, progress: Progress, live: bool
) -> int:
    from angos_core.migrate.verify import Verifier

    verifier = Verifier(
        src.blobs,
        src.meta,
        dst.blobs,
        dst.meta,
        jobs=args.jobs,
        deep=args.deep,
        progress=progress,
        live=live,
    )
    differences = await verifier.run()
    if args.json:
        print(json.dumps({"checked": verifier.checked, "differences": differences}, indent=2))
    else:
        for difference in differences:
            print(difference)
        print(f"verify: {verifier.checked} objects checked, {len(differences)} differences")
    return EXIT_DIFFERENT if differences else 0

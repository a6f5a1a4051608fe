"""Running a bench/ harness end to end from a test: as a user runs it, in a subprocess,
its stores under the test's temporary directory, its JSON and Markdown read back."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.tools import require_tool

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class BenchRun:
    report: dict[str, Any]  # --json
    table: str  # --markdown ("" without it)
    stdout: str


def run_bench(
    module: str,
    tmp_path: Path,
    *args: str,
    tool: tuple[str, str] = ("wrk", "wrk"),
    markdown: bool = True,
) -> BenchRun:
    """``python -m <module> <args> --workdir --json [--markdown]``, after checking that
    ``tool`` (program, Debian package) is installed. Fails the test on a non-zero exit,
    and if a store is left behind under ``--workdir``."""
    program, package = tool
    require_tool(program, f"install it with: apt-get install {package}")
    out_json, out_md = tmp_path / "bench.json", tmp_path / "bench.md"
    extra = ["--markdown", str(out_md)] if markdown else []
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            module,
            *args,
            "--workdir",
            str(tmp_path),
            "--json",
            str(out_json),
            *extra,
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # The stores and logs live under --workdir and are gone after the run.
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("angos-bench-")]
    table = out_md.read_text() if markdown else ""
    return BenchRun(json.loads(out_json.read_text()), table, proc.stdout)

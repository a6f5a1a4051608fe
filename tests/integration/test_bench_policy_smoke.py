"""bench/policy runs end to end: the 20-rule policy allows the benchmark's request.

One second of wrk per row, so it stays cheap; it checks the report's shape and that each
row got only 2xx answers (the policy row: every request allowed; wrk's non-2xx count is 0,
else the run fails). It never asserts a speed or a ratio.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.support.tools import require_tool

REPO = Path(__file__).resolve().parents[2]
ROWS = ["none", "policy"]


def test_bench_policy_measures_no_policy_and_twenty_rules(tmp_path: Path) -> None:
    require_tool("wrk", "install it with: apt-get install wrk")
    out_json, out_md = tmp_path / "policy.json", tmp_path / "policy.md"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.policy",
            "--seconds",
            "1",
            "--connections",
            "8",
            "--workdir",
            str(tmp_path),
            "--json",
            str(out_json),
            "--markdown",
            str(out_md),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(out_json.read_text())
    assert list(report["samples"]) == ROWS
    assert all(len(v) == 1 and v[0] > 0 for v in report["samples"].values())
    assert len(report["ratios"]) == 1 and report["ratios"][0] > 0
    table = out_md.read_text()
    for row in ROWS:
        assert f"\n| {row} | " in table
    # The stores live under --workdir and are gone after the run.
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("angos-bench-")]

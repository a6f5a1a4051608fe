"""bench/auth runs end to end: every credential kind is accepted on every request.

One second of wrk per row, so it stays cheap; it checks the report's shape and that each
authenticated row got only 2xx answers (wrk's non-2xx count is 0, else the run fails). It
never asserts a speed or a ratio.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.support.tools import require_tool

REPO = Path(__file__).resolve().parents[2]
ROWS = ["anonymous", "basic", "bearer", "bearer-oidc"]


def test_bench_auth_measures_every_credential_kind(tmp_path: Path) -> None:
    require_tool("wrk", "install it with: apt-get install wrk")
    out_json, out_md = tmp_path / "auth.json", tmp_path / "auth.md"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.auth",
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
    assert list(report["ratios"]) == ROWS[1:]
    table = out_md.read_text()
    for row in ROWS:
        assert f"\n| {row} | " in table
    # The stores live under --workdir and are gone after the run.
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("angos-bench-")]

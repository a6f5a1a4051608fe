"""bench/auth and bench/policy run end to end: every row's requests are answered.

One second of wrk per row, so it stays cheap; it checks the report's shape and that each
row got only 2xx answers (wrk's non-2xx count is 0, else the run fails): every credential
kind accepted on every request, the 20-rule policy allowing the benchmark's request. It
never asserts a speed or a ratio.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.bench import run_bench

ROWS = {
    "bench.auth": ["anonymous", "basic", "bearer", "bearer-oidc"],
    "bench.policy": ["none", "policy"],
}


@pytest.mark.parametrize("module", sorted(ROWS))
def test_every_row_is_measured_against_the_baseline(module: str, tmp_path: Path) -> None:
    rows = ROWS[module]
    run = run_bench(module, tmp_path, "--seconds", "1", "--connections", "8")
    report, table = run.report, run.table
    assert list(report["samples"]) == rows
    assert all(len(v) == 1 and v[0] > 0 for v in report["samples"].values())
    assert list(report["ratios"]) == rows[1:]
    assert all(len(v) == 1 and v[0] > 0 for v in report["ratios"].values())
    for row in rows:
        assert f"\n| {row} | " in table

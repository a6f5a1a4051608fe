"""The benchmark harness (bench/) runs end to end and produces a complete table.

Quick mode, against Angos only, so it stays cheap (about 10 s). It checks the shape of the
report and that every workload produced a figure; it never asserts a speed.
"""

from __future__ import annotations

import hashlib
import itertools
from pathlib import Path

from bench.datagen import BLOCK, BlobStream
from tests.support.bench import run_bench

ROWS = ["1", "2", "3", "3b", "4", "5", "6a", "6", "7"]


def test_blob_stream_is_repeatable_and_ranges_reassemble() -> None:
    size = 2 * BLOCK + 12345
    a, b = BlobStream(7, size), BlobStream(7, size)
    whole = b"".join(bytes(p) for p in a.pieces())
    assert len(whole) == size
    assert a.digest == b.digest == "sha256:" + hashlib.sha256(whole).hexdigest()
    cuts = [0, 5, BLOCK - 3, BLOCK + 4, 2 * BLOCK, size]
    parts = [b"".join(bytes(p) for p in a.pieces(s, e)) for s, e in itertools.pairwise(cuts)]
    assert b"".join(parts) == whole
    assert BlobStream(8, size).digest != a.digest


def test_quick_run_against_angos_produces_a_complete_table(tmp_path: Path) -> None:
    run = run_bench("bench", tmp_path, "--quick", "--registries", "angos")
    report, table = run.report, run.table
    rows = {r["key"]: r for r in report["rows"]}
    assert list(rows) == ROWS
    for key, row in rows.items():
        assert row["errors"] == {}, (key, row["errors"])
        value = row["values"]["angos"]
        assert isinstance(value, float) and value > 0, (key, value)
    assert rows["6"]["details"]["angos"][0]["pages"] > 1  # pagination was followed
    assert report["refs"]["loopback_mb_s"] > 0 and report["refs"]["sha256_mb_s"] > 0
    assert all(v > 0 for v in report["refs"]["sendfile_n_mb_s_at_row3"])  # one per round

    assert "| # | workload | unit | Angos | Distribution 2.8 |" in table
    for key in ROWS:
        assert f"\n| {key} | " in table
    assert "loopback TCP" in table and "sha256" in table
    assert "% of sendfile beside it" in table

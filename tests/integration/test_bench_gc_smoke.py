"""bench/gc runs end to end at a tiny size: both collectors delete the same blobs (the
bench asserts it), and the report has its two rows. It never asserts a speed or a ratio.
"""

from __future__ import annotations

from pathlib import Path

from tests.support.bench import run_bench


def test_bench_gc_angos_and_distribution_delete_the_same_blobs(tmp_path: Path) -> None:
    run = run_bench(
        "bench.gc",
        tmp_path,
        "--repos",
        "4",
        tool=("docker-registry", "docker-registry"),
        markdown=False,
    )
    report = run.report
    # 4 repositories of 2 images of 5 blobs; one image of each deleted.
    assert report["blobs"] == 40
    assert report["deleted"] == {"angos": 20, "distribution": 20}
    for figure in ("seconds", "peak_rss_mib"):
        assert set(report[figure]) == {"angos", "distribution"}
        assert all(v > 0 for v in report[figure].values())
    assert "gc, fs store, 40 blobs in 4 repositories, 20 deleted: wall time" in run.stdout
    assert "peak RSS" in run.stdout and "load average" in run.stdout

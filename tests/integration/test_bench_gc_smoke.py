"""bench/gc runs end to end at a tiny size: both collectors delete the same blobs (the
bench asserts it), and the report has its two rows. It never asserts a speed or a ratio.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.support.tools import require_tool

REPO = Path(__file__).resolve().parents[2]


def test_bench_gc_angos_and_distribution_delete_the_same_blobs(tmp_path: Path) -> None:
    require_tool("docker-registry", "install it with: apt-get install docker-registry")
    out_json = tmp_path / "gc.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.gc",
            "--repos",
            "4",
            "--workdir",
            str(tmp_path),
            "--json",
            str(out_json),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(out_json.read_text())
    # 4 repositories of 2 images of 5 blobs; one image of each deleted.
    assert report["blobs"] == 40
    assert report["deleted"] == {"angos": 20, "distribution": 20}
    for figure in ("seconds", "peak_rss_mib"):
        assert set(report[figure]) == {"angos", "distribution"}
        assert all(v > 0 for v in report[figure].values())
    assert "gc, fs store, 40 blobs in 4 repositories, 20 deleted: wall time" in proc.stdout
    assert "peak RSS" in proc.stdout and "load average" in proc.stdout
    # The stores live under --workdir and are gone after the run.
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("angos-bench-")]

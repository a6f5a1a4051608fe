"""Offline garbage collection, Angos beside CNCF Distribution (issue 13).

    .venv/bin/python -m bench.gc [--repos 1000] [--json FILE] [--workdir DIR]

One store of ``--repos`` repositories is built directly on disk in Distribution's layout
(``<root>/v2/...``, which Angos's fs store reads as is): each repository holds two images
(an OCI manifest, a config and 3 layers of its own: 5 blobs each, the manifest body
included), so 10 blobs per repository. Then one image of every repository is deleted as
``DELETE /v2/<name>/manifests/<digest>`` leaves it on disk (its revision link and its tag
gone, its blobs and layer links stay): half the blobs are unreferenced.

The store is copied, and each registry's collector runs once on its own copy as a child
process: ``angos gc --min-age-secs 0`` and ``docker-registry garbage-collect config.yml``
(Debian's Distribution 2.8, its default storage config). Measured: wall time, and peak
RSS from ``wait4``'s rusage of that child. Both must delete the same blobs (data files
counted on disk before and after): a collector that deletes nothing cannot look fast.
Prints one markdown table with the 1-minute load average before and after.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.servers import REPO_ROOT, ensure_tools

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
LAYERS = 3


def _put_blob(root: Path, data: bytes) -> str:
    hexpart = hashlib.sha256(data).hexdigest()
    where = root / "v2/blobs/sha256" / hexpart[:2] / hexpart
    where.mkdir(parents=True, exist_ok=True)
    (where / "data").write_bytes(data)
    return f"sha256:{hexpart}"


def _link(path: Path, digest: str) -> None:
    path.mkdir(parents=True, exist_ok=True)
    (path / "link").write_text(digest)


def _descriptor(digest: str, media_type: str, size: int) -> dict[str, object]:
    return {"mediaType": media_type, "digest": digest, "size": size}


def make_store(root: Path, repos: int) -> tuple[int, int]:
    """Build the store; (blobs stored, blobs left unreferenced)."""
    stored = unreferenced = 0
    for r in range(repos):
        name = f"ns{r % 20:02d}/app{r:05d}"
        repo = root / "v2/repositories" / name
        for image in range(2):
            config = json.dumps({"architecture": "amd64", "os": "linux", "id": [r, image]})
            layers = [f"layer {r} {image} {i}".encode() * 16 for i in range(LAYERS)]
            descs = []
            for data, media_type in [(config.encode(), OCI_CONFIG)] + [
                (layer, OCI_LAYER) for layer in layers
            ]:
                digest = _put_blob(root, data)
                _link(repo / "_layers/sha256" / digest[7:], digest)
                descs.append(_descriptor(digest, media_type, len(data)))
            body = json.dumps(
                {
                    "schemaVersion": 2,
                    "mediaType": OCI_MANIFEST,
                    "config": descs[0],
                    "layers": descs[1:],
                }
            ).encode()
            manifest = _put_blob(root, body)
            stored += 2 + LAYERS
            if image == 1:
                # Deleted: what DELETE /v2/<name>/manifests/<digest> leaves on disk.
                unreferenced += 2 + LAYERS
                continue
            tag = repo / "_manifests/tags/latest"
            _link(repo / "_manifests/revisions/sha256" / manifest[7:], manifest)
            _link(tag / "current", manifest)
            _link(tag / "index/sha256" / manifest[7:], manifest)
    return stored, unreferenced


def count_blobs(root: Path) -> int:
    return sum(1 for _ in (root / "v2/blobs").glob("sha256/*/*/data"))


def run_child(command: list[str], log: Path) -> tuple[float, int]:
    """Run ``command`` to the end (its output to ``log``); (wall seconds, peak RSS KiB)."""
    with open(log, "wb") as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        tail = log.read_text(errors="replace")[-2000:]
        raise SystemExit(f"{command[0]} exited {proc.returncode}:\n{tail}")
    return wall, usage.ru_maxrss  # KiB on Linux


def angos_exe() -> str:
    exe = str(REPO_ROOT / ".venv" / "bin" / "angos")
    return exe if os.access(exe, os.X_OK) else shutil.which("angos") or exe


def bench(repos: int, work: Path) -> dict[str, object]:
    tools = ensure_tools({"docker-registry": "docker-registry"})
    angos_root = work / "angos"
    stored, unreferenced = make_store(angos_root, repos)
    assert count_blobs(angos_root) == stored, "blobs shared between images: fix the data"
    dist_base = work / "distribution"
    # Distribution's filesystem driver keeps the tree under <rootdirectory>/docker/registry.
    shutil.copytree(angos_root, dist_base / "docker/registry")
    angos_cfg = work / "angos.toml"
    angos_cfg.write_text(f'[blob_store.fs]\nroot_dir = "{angos_root}"\n')
    dist_cfg = work / "config.yml"
    dist_cfg.write_text(
        "version: 0.1\n"
        "log:\n  level: info\n"
        "storage:\n"
        f"  filesystem:\n    rootdirectory: {dist_base}\n"
        "  cache:\n    blobdescriptor: inmemory\n"
        "  delete:\n    enabled: true\n"
    )
    subprocess.run(["sync"], check=False)
    load_before = os.getloadavg()[0]
    runs = {
        "angos": [angos_exe(), "gc", "-c", str(angos_cfg), "--min-age-secs", "0"],
        "distribution": [tools["docker-registry"], "garbage-collect", str(dist_cfg)],
    }
    roots = {"angos": angos_root, "distribution": dist_base / "docker/registry"}
    wall: dict[str, float] = {}
    rss: dict[str, float] = {}
    deleted: dict[str, int] = {}
    for name, command in runs.items():
        wall[name], kib = run_child(command, work / f"{name}.log")
        rss[name] = kib / 1024
        deleted[name] = stored - count_blobs(roots[name])
    load_after = os.getloadavg()[0]
    # The comparison is only fair if both collected exactly the unreferenced blobs.
    assert deleted["angos"] == deleted["distribution"] == unreferenced, deleted
    return {
        "repositories": repos,
        "blobs": stored,
        "deleted": deleted,
        "seconds": wall,
        "peak_rss_mib": rss,
        "load": [load_before, load_after],
    }


def markdown(result: dict[str, object]) -> str:
    wall = result["seconds"]
    rss = result["peak_rss_mib"]
    assert isinstance(wall, dict) and isinstance(rss, dict)
    deleted = result["deleted"]
    assert isinstance(deleted, dict)
    load = result["load"]
    assert isinstance(load, list)
    head = (
        f"gc, fs store, {result['blobs']:,} blobs in {result['repositories']:,} repositories, "
        f"{deleted['angos']:,} deleted"
    )
    lines = [
        "| row | unit | angos | distribution | Angos advantage (D/A) |",
        "|---|---|---|---|---|",
        f"| {head}: wall time | s | {wall['angos']:.2f} | {wall['distribution']:.2f} | "
        f"{wall['distribution'] / wall['angos']:.2f} |",
        f"| {head}: peak RSS | MiB | {rss['angos']:.1f} | {rss['distribution']:.1f} | "
        f"{rss['distribution'] / rss['angos']:.2f} |",
        "",
        f"1-minute load average: {load[0]:.2f} before, {load[1]:.2f} after.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gc", description=__doc__)
    parser.add_argument("--repos", type=int, default=1000, help="repositories (10 blobs each)")
    parser.add_argument("--workdir", help="where the temporary stores go (default $TMPDIR)")
    parser.add_argument("--json", help="write the raw result to this file")
    args = parser.parse_args(argv)
    if args.repos < 1:
        parser.error(f"--repos: at least 1, got {args.repos}")
    work = Path(tempfile.mkdtemp(prefix="angos-bench-gc-", dir=args.workdir))
    try:
        result = bench(args.repos, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(markdown(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``python -m bench.migrate``: ``angos migrate`` fs -> S3 against ``aws s3 sync`` of the tree.

One run of each, on the same generated registry (about 2,000 blobs of random bytes in
small images, their manifests, layer/revision/tag links, written straight into the fs
layout), to two fresh buckets of one moto server (bounded concurrency: its memory stays
flat). Prints one markdown table: wall seconds, MB/s of blob bytes, peak RSS of each tool
(``ru_maxrss`` of its process from ``wait4``), the CPU seconds of each tool and of the moto
server while it ran (these move far less with the machine's other load than wall time),
and the ratio sync/migrate (above 1 means ``angos migrate`` is faster). Each side is
checked afterwards: ``aws s3 sync`` must have put every file, ``angos migrate --verify``
must be clean.

``aws`` comes from awscli on PyPI (``pip install -e '.[bench]'``, or its own venv: it pins
botocore exactly, which may clash with aiobotocore's range; ``--aws PATH`` names it).
Only one ``aws`` and one ``angos migrate`` run: on a shared machine the figure is one
sample, so the table says the load average it ran under.
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
from dataclasses import dataclass
from pathlib import Path

from angos_core import layout
from angos_core.oci import mediatypes as mt
from angos_core.testing.moto_server import (
    ACCESS_KEY_ID,
    REGION,
    SECRET_KEY,
    create_bucket,
    delete_bucket,
    s3_settings,
    start_moto_server,
    stop_moto_server,
)

MIB = 1024 * 1024
LAYERS_PER_IMAGE = 4
REPOSITORIES = 50
CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"
LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"


@dataclass
class Tree:
    root: Path
    files: int
    blobs: int
    blob_bytes: int


def _write(root: Path, key: str, data: bytes) -> None:
    path = root / key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _digest(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


def generate(root: Path, total: int, blobs: int) -> Tree:
    """Images of ``LAYERS_PER_IMAGE`` random layers (plus a config each) over
    ``REPOSITORIES`` repositories, about ``total`` bytes in ``blobs`` blobs, one tag each."""
    images = max(1, blobs // (LAYERS_PER_IMAGE + 1))
    layer_size = max(1, total // (images * LAYERS_PER_IMAGE))
    files = count = size = 0
    for i in range(images):
        name = f"bench/repo{i % REPOSITORIES}"
        config = json.dumps({"architecture": "amd64", "os": "linux", "image": i}).encode()
        layers = [os.urandom(layer_size) for _ in range(LAYERS_PER_IMAGE)]
        descriptors = []
        blobs_of_image = [(config, CONFIG_TYPE)] + [(layer, LAYER_TYPE) for layer in layers]
        for blob, media_type in blobs_of_image:
            digest = _digest(blob)
            _write(root, layout.blob_data_key(digest), blob)
            _write(root, layout.layer_link_key(name, digest), layout.link_content(digest))
            descriptors.append({"mediaType": media_type, "digest": digest, "size": len(blob)})
            files += 2
            count += 1
            size += len(blob)
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": mt.OCI_MANIFEST,
                "config": descriptors[0],
                "layers": descriptors[1:],
            }
        ).encode()
        digest = _digest(manifest)
        tag = f"v{i}"
        link = layout.link_content(digest)
        _write(root, layout.blob_data_key(digest), manifest)
        _write(root, layout.revision_link_key(name, digest), link)
        _write(root, layout.tag_index_key(name, tag, digest), link)
        _write(root, layout.tag_current_key(name, tag), link)
        files += 4
    return Tree(root, files, count, size)


@dataclass
class Run:
    seconds: float
    peak_rss_kib: int
    returncode: int
    output: str
    #: CPU seconds (user + system) of the tool's process, and of the moto server meanwhile.
    cpu: float = 0.0
    server_cpu: float = 0.0


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a running process so far (``/proc/<pid>/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def timed(argv: list[str], env: dict[str, str], server: int | None = None) -> Run:
    """Run ``argv``; wall time, the peak RSS and CPU time of that process (``wait4``), and
    the CPU time the process ``server`` spent meanwhile."""
    with tempfile.TemporaryFile() as out:
        server_before = cpu_seconds(server) if server else 0.0
        started = time.monotonic()
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.monotonic() - started
        server_cpu = cpu_seconds(server) - server_before if server else 0.0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        output = out.read().decode(errors="replace")
    cpu = usage.ru_utime + usage.ru_stime
    return Run(seconds, int(usage.ru_maxrss), proc.returncode, output, cpu, server_cpu)


def bucket_objects(endpoint: str, bucket: str) -> int:
    from angos_core.testing.moto_server import s3_client

    client = s3_client(endpoint)
    return sum(
        len(page.get("Contents", []))
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    )


def s3_toml(endpoint: str, bucket: str) -> str:
    lines = ["[blob_store.s3]"]
    for key, value in s3_settings(endpoint, bucket).items():
        lines.append(f'{key} = "{value}"')
    return "\n".join(lines) + "\n"


def parse_size(text: str) -> int:
    units = {"GiB": 1024 * MIB, "MiB": MIB, "KiB": 1024, "": 1}
    for unit, factor in units.items():
        if unit and text.endswith(unit):
            return int(float(text[: -len(unit)]) * factor)
    return int(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.migrate", description=__doc__)
    parser.add_argument("--size", default="2GiB", help="blob bytes in total (default 2GiB)")
    parser.add_argument("--blobs", type=int, default=2000, help="about this many blobs")
    parser.add_argument("--jobs", type=int, default=16, help="angos migrate --jobs")
    parser.add_argument("--aws", default=shutil.which("aws"), help="the aws command")
    parser.add_argument("--workdir", default=None, help="where to generate the tree")
    args = parser.parse_args(argv)
    if not args.aws:
        print(
            "bench.migrate: no `aws` command: pip install -e '.[bench]' or --aws PATH",
            file=sys.stderr,
        )
        return 2
    work = Path(tempfile.mkdtemp(prefix="angos-bench-migrate-", dir=args.workdir))
    moto, endpoint = start_moto_server(max_concurrent_requests=8)
    try:
        t0 = time.monotonic()
        tree = generate(work / "fs", parse_size(args.size), args.blobs)
        print(
            f"generated {tree.blobs} blobs, {tree.blob_bytes / MIB:.0f} MiB, "
            f"{tree.files} files in {time.monotonic() - t0:.0f}s",
            file=sys.stderr,
        )
        env = {
            **os.environ,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY_ID,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_EC2_METADATA_DISABLED": "true",
        }

        sync_bucket = create_bucket(endpoint)
        sync = timed(
            [
                args.aws,
                "--endpoint-url",
                endpoint,
                "s3",
                "sync",
                str(tree.root),
                f"s3://{sync_bucket}/",
                "--only-show-errors",
            ],
            env,
            moto.pid,
        )
        synced = bucket_objects(endpoint, sync_bucket)
        delete_bucket(endpoint, sync_bucket)  # moto keeps objects in memory: free it first

        angos_bucket = create_bucket(endpoint)
        old, new = work / "old.toml", work / "new.toml"
        old.write_text(f'[blob_store.fs]\nroot_dir = "{tree.root}"\n')
        new.write_text(s3_toml(endpoint, angos_bucket))
        angos = [
            sys.executable,
            "-m",
            "angos_core.cli",
            "migrate",
            "--from",
            str(old),
            "--to",
            str(new),
        ]
        migrate = timed(
            [*angos, "--jobs", str(args.jobs), "--passes", "1", "--json"], env, moto.pid
        )
        verify = timed([*angos, "--verify", "--jobs", str(args.jobs)], env)
        delete_bucket(endpoint, angos_bucket)
    finally:
        stop_moto_server(moto)
        shutil.rmtree(work, ignore_errors=True)

    problems = []
    if sync.returncode != 0 or synced != tree.files:
        problems.append(
            f"aws s3 sync: exit {sync.returncode}, {synced}/{tree.files} objects: "
            f"{sync.output[-2000:]}"
        )
    if migrate.returncode != 0:
        problems.append(f"angos migrate: exit {migrate.returncode}: {migrate.output[-2000:]}")
    if verify.returncode != 0:
        problems.append(
            f"angos migrate --verify: exit {verify.returncode}: {verify.output[-2000:]}"
        )
    mb = tree.blob_bytes / 1e6
    load = os.getloadavg()
    print(
        f"\nfs -> S3 (moto), {tree.blobs} blobs, {tree.blob_bytes / MIB:.0f} MiB, "
        f"{tree.files} files; load average {load[0]:.1f}/{load[1]:.1f}/{load[2]:.1f} "
        f"on {os.cpu_count()} CPUs\n"
    )
    print("| tool | seconds | MB/s | peak RSS MiB | CPU s | moto CPU s |")
    print("|---|---|---|---|---|---|")
    print(
        f"| aws s3 sync | {sync.seconds:.1f} | {mb / sync.seconds:.1f} | "
        f"{sync.peak_rss_kib / 1024:.0f} | {sync.cpu:.1f} | {sync.server_cpu:.1f} |"
    )
    print(
        f"| angos migrate --jobs {args.jobs} | {migrate.seconds:.1f} | "
        f"{mb / migrate.seconds:.1f} | {migrate.peak_rss_kib / 1024:.0f} | "
        f"{migrate.cpu:.1f} | {migrate.server_cpu:.1f} |"
    )
    both = (sync.cpu + sync.server_cpu) / (migrate.cpu + migrate.server_cpu)
    print(
        f"\nratio (sync seconds / migrate seconds): {sync.seconds / migrate.seconds:.2f}x; "
        f"CPU of tool and server (sync / migrate): {both:.2f}x; "
        f"verify took {verify.seconds:.1f}s"
    )
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())

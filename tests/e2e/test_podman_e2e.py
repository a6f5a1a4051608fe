"""End to end with podman: import, push (OCI and Docker v2s2 manifests), remove, pull back.

podman runs as root with every path it keeps state in under a fresh temporary directory: vfs
storage (``--root``, ``--runroot``), ``--tmpdir``, its three config files (storage,
registries, containers.conf) passed through the environment, and a private $HOME for its
policy.json. So the machine's /etc/containers and /var/lib/containers/storage are never read
for images or changed. The one thing podman 4.3 has no option for is its blob-info cache
(/var/lib/containers/cache, which skopeo uses too): a cache of where blobs were seen, keyed by
registry host and port, so each test's fresh port keeps it out of the way. Images come from
``podman import`` of a tar: nothing is ever run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.e2e.oci_images import (
    DOCKER_LIST,
    DOCKER_MANIFEST,
    OCI_INDEX,
    OCI_MANIFEST,
    get_manifest,
    write_rootfs_tar,
)
from tests.support.tools import require_tool, run_tool, unavailable

if TYPE_CHECKING:
    from tests.e2e.conftest import Registry

pytestmark = pytest.mark.e2e

#: ``podman push --format`` value -> the manifest media type podman sends for it.
FORMATS = {"oci": OCI_MANIFEST, "v2s2": DOCKER_MANIFEST}
#: ``podman manifest push --format`` value -> the media type of the list it sends.
LIST_FORMATS = {"oci": OCI_INDEX, "v2s2": DOCKER_LIST}
ARCHES = ("amd64", "arm64")
LOCAL = "localhost/angos-e2e-local:1"


class Podman:
    """``podman`` whose storage, run state and configuration all live under ``root``."""

    def __init__(self, binary: str, root: Path) -> None:
        self.binary = binary
        conf = root / "conf"
        conf.mkdir(parents=True)
        storage, run, tmp = root / "storage", root / "run", root / "tmp"
        (conf / "storage.conf").write_text(
            f'[storage]\ndriver = "vfs"\ngraphroot = "{storage}"\nrunroot = "{run}"\n'
        )
        # No search registries: every reference in the tests is fully qualified.
        (conf / "registries.conf").write_text("unqualified-search-registries = []\n")
        # No journald events, no systemd cgroups, and the CNI backend with its config and an
        # (empty) plugin dir here: the default netavark backend creates /run/containers/networks
        # even for `podman images`, and CNI insists its plugin dirs exist. Nothing in these
        # tests uses a network or runs a container.
        (conf / "cni-plugins").mkdir()
        (conf / "containers.conf").write_text(
            "[engine]\n"
            'events_logger = "none"\n'
            'cgroup_manager = "cgroupfs"\n'
            f'static_dir = "{storage / "libpod"}"\n'
            f'volume_path = "{storage / "volumes"}"\n'
            "[network]\n"
            'network_backend = "cni"\n'
            f'network_config_dir = "{conf / "networks"}"\n'
            f'cni_plugin_dirs = ["{conf / "cni-plugins"}"]\n'
        )
        # Accept any image: no dependence on the machine's /etc/containers/policy.json. Not
        # every command has --signature-policy (`manifest push` lacks it); all of them read
        # $HOME/.config/containers/policy.json first.
        home = root / "home"
        (home / ".config" / "containers").mkdir(parents=True)
        (home / ".config" / "containers" / "policy.json").write_text(
            '{"default": [{"type": "insecureAcceptAnything"}]}\n'
        )
        self.env = {
            **os.environ,
            "HOME": str(home),
            "CONTAINERS_STORAGE_CONF": str(conf / "storage.conf"),
            "CONTAINERS_REGISTRIES_CONF": str(conf / "registries.conf"),
            "CONTAINERS_CONF": str(conf / "containers.conf"),
        }
        self.global_args = [
            f"--root={storage}",
            f"--runroot={run}",
            "--storage-driver=vfs",
            f"--tmpdir={tmp}",
        ]

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """``podman ARGS``; on failure the error shows stdout and stderr."""
        return run_tool(
            [self.binary, *self.global_args, *args],
            shown=f"podman {' '.join(args)}",
            env=self.env,
            check=check,
        )

    def inspect(self, ref: str, field: str) -> str:
        return self.run("image", "inspect", "--format", f"{{{{.{field}}}}}", ref).stdout.strip()


@pytest.fixture
def podman() -> Iterator[Podman]:
    binary = require_tool("podman", "apt-get install podman (or run scripts/test)")
    if os.geteuid() != 0:
        unavailable(
            "these podman tests run it as root (rootless needs subuid setup); run as root",
            "podman",
        )
    # A short path under /tmp: podman refuses a --runroot longer than 50 characters, which
    # pytest's tmp_path exceeds.
    root = Path(tempfile.mkdtemp(prefix="angos-podman-"))
    try:
        yield Podman(binary, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.parametrize("fmt", FORMATS)
def test_push_remove_pull_same_image(
    podman: Podman, registry: Registry, tmp_path: Path, fmt: str
) -> None:
    tar = write_rootfs_tar(
        tmp_path / "rootfs.tar",
        {"etc/hello": b"hello from podman\n", "bin/data": bytes(range(256)) * 256},
    )
    # `podman import` prints the new image's id, the digest of its config.
    image_id = podman.run("import", str(tar), LOCAL).stdout.strip().splitlines()[-1]
    assert image_id.startswith("sha256:"), image_id

    remote = f"{registry.host}/e2e/podman:{fmt}"
    digest_file = tmp_path / "pushed.digest"
    podman.run(
        "push", "--tls-verify=false", f"--format={fmt}", f"--digestfile={digest_file}",
        LOCAL, remote,
    )  # fmt: skip
    pushed = digest_file.read_text().strip()

    # The registry stored the manifest with the media type podman sent, and serves the bytes
    # podman computed the digest of.
    served = get_manifest(registry.url, "e2e/podman", fmt, accept=FORMATS[fmt])
    assert served.status == 200, served.body
    assert served.content_type == FORMATS[fmt]
    assert served.digest == served.body_digest == pushed
    manifest = json.loads(served.body)
    assert manifest.get("mediaType", OCI_MANIFEST) == FORMATS[fmt]
    assert manifest["config"]["digest"] == image_id

    # `podman search` reads the catalog and the tag list.
    found = podman.run("search", "--tls-verify=false", "--format={{.Name}}", f"{registry.host}/e2e")
    assert f"{registry.host}/e2e/podman" in found.stdout.split()
    tags = podman.run("search", "--list-tags", "--tls-verify=false", f"{registry.host}/e2e/podman")
    # A NAME / TAG table (podman 4.3 ignores --format with --list-tags).
    assert [line.split() for line in tags.stdout.splitlines()[1:]] == [
        [f"{registry.host}/e2e/podman", fmt]
    ]

    podman.run("rmi", LOCAL)
    assert podman.run("image", "exists", image_id, check=False).returncode == 1

    podman.run("pull", "--tls-verify=false", remote)
    assert f"sha256:{podman.inspect(remote, 'Id')}" == image_id
    assert podman.inspect(remote, "Digest") == pushed


@pytest.mark.parametrize("fmt", LIST_FORMATS)
def test_manifest_list_push_then_pull_each_platform(
    podman: Podman, registry: Registry, tmp_path: Path, fmt: str
) -> None:
    """``podman manifest push --all`` of a two-platform list; ``pull --arch`` picks from it."""
    image_ids = {}
    for arch in ARCHES:
        tar = write_rootfs_tar(tmp_path / f"{arch}.tar", {f"etc/{arch}": arch.encode() * 1000})
        out = podman.run("import", f"--arch={arch}", str(tar), f"localhost/angos-e2e-{arch}:1")
        image_ids[arch] = out.stdout.strip().splitlines()[-1]
    podman.run("manifest", "create", "localhost/angos-e2e-list:1")
    for arch in ARCHES:
        podman.run(
            "manifest", "add", "localhost/angos-e2e-list:1",
            f"containers-storage:localhost/angos-e2e-{arch}:1",
        )  # fmt: skip

    remote = f"{registry.host}/e2e/podman-list:{fmt}"
    digest_file = tmp_path / "list.digest"
    podman.run(
        "manifest", "push", "--all", "--tls-verify=false", f"--format={fmt}",
        f"--digestfile={digest_file}", "localhost/angos-e2e-list:1", f"docker://{remote}",
    )  # fmt: skip
    pushed = digest_file.read_text().strip()

    served = get_manifest(registry.url, "e2e/podman-list", fmt, accept=LIST_FORMATS[fmt])
    assert served.status == 200, served.body
    assert served.content_type == LIST_FORMATS[fmt]
    assert served.digest == served.body_digest == pushed
    children = json.loads(served.body)["manifests"]
    assert sorted(c["platform"]["architecture"] for c in children) == sorted(ARCHES)
    for child in children:
        # podman converted each image to the list's format and pushed it first.
        assert child["mediaType"] == FORMATS[fmt]
        served = get_manifest(registry.url, "e2e/podman-list", child["digest"], child["mediaType"])
        assert served.status == 200, served.body
        assert served.content_type == child["mediaType"]
        assert served.body_digest == child["digest"]
        config = json.loads(served.body)["config"]["digest"]
        assert config == image_ids[child["platform"]["architecture"]]

    podman.run("manifest", "rm", "localhost/angos-e2e-list:1")
    podman.run("rmi", *(f"localhost/angos-e2e-{arch}:1" for arch in ARCHES))
    for arch in ARCHES:
        podman.run("pull", "--tls-verify=false", f"--arch={arch}", remote)
        assert f"sha256:{podman.inspect(remote, 'Id')}" == image_ids[arch]
        assert podman.inspect(remote, "Architecture") == arch

"""A private containerd for end-to-end tests: ``containerd_engine`` (function scope).

It runs its own ``containerd`` with a config file written here: root, state, opt dir and the
gRPC socket all in a fresh temporary directory, the CRI plugin off, no debug or metrics
listener, so it never touches a system containerd (or the one dockerd manages). ``ctr``
talks to it through :meth:`ContainerdEngine.ctr`.

One daemon per test, not per session: containerd's content store is shared across its
namespaces, so a long-lived daemon would serve a later test's pull from its own cache instead
of from that test's registry. It answers within a fraction of a second.

containerd needs root. Outside CI a missing tool or a daemon that cannot start skips the test;
with CI=true both fail.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from angos_core.testing.tools import require_tool, run_daemon, run_tool, unavailable

START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0
INSTALL_HINT = "apt-get install containerd (or run scripts/test, which installs it)"
NAMESPACE = "angos-e2e"


class ContainerdEngine:
    """A running private containerd and ``ctr`` bound to its socket and namespace."""

    def __init__(self, ctr: str, root: Path) -> None:
        self.ctr_binary = ctr
        self.root = root
        self.socket = root / "containerd.sock"
        self.config = root / "config.toml"
        self.log = root / "containerd.log"

    def ctr(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """``ctr ARGS`` against this daemon; on failure the error shows stdout, stderr and
        the daemon's log."""
        return run_tool(
            [self.ctr_binary, "--address", str(self.socket), "--namespace", NAMESPACE, *args],
            shown=f"ctr {' '.join(args)}",
            check=check,
            log=self.log,
        )


def write_config(root: Path, socket: Path) -> Path:
    """A minimal containerd 1.6 config: everything under ``root``, only what ctr needs."""
    config = root / "config.toml"
    config.write_text(
        "version = 2\n"
        f'root = "{root / "root"}"\n'
        f'state = "{root / "state"}"\n'
        # CRI is Kubernetes' interface; the others are snapshotters that cannot work here and
        # only add warnings. The tests pass --snapshotter native.
        "disabled_plugins = [\n"
        '  "io.containerd.grpc.v1.cri",\n'
        '  "io.containerd.snapshotter.v1.aufs",\n'
        '  "io.containerd.snapshotter.v1.btrfs",\n'
        '  "io.containerd.snapshotter.v1.devmapper",\n'
        '  "io.containerd.snapshotter.v1.zfs",\n'
        "]\n"
        f'[grpc]\n  address = "{socket}"\n'
        '[debug]\n  address = ""\n'
        '[metrics]\n  address = ""\n'
        # Its default is /opt/containerd.
        f'[plugins."io.containerd.internal.v1.opt"]\n  path = "{root / "opt"}"\n'
    )
    return config


@pytest.fixture
def containerd_engine() -> Iterator[ContainerdEngine]:
    containerd = require_tool("containerd", INSTALL_HINT)
    ctr = require_tool("ctr", INSTALL_HINT)
    if os.geteuid() != 0:
        unavailable("containerd needs root to start; run the tests as root", "containerd")
    # Short paths under /tmp: the socket path (and containerd's ttrpc socket beside it) must
    # fit the 108-byte unix socket limit, which pytest's tmp_path can exceed.
    root = Path(tempfile.mkdtemp(prefix="angos-containerd-"))
    engine = ContainerdEngine(ctr, root)
    write_config(root, engine.socket)
    try:
        with run_daemon(
            [containerd, "--config", str(engine.config)],
            log=engine.log,
            ready=lambda: engine.ctr("version", check=False).returncode == 0,
            name="containerd",
            what="containerd",
            start_timeout=START_TIMEOUT_S,
            stop_timeout=STOP_TIMEOUT_S,
            poll_secs=0.05,
        ):
            yield engine
    finally:
        shutil.rmtree(root, ignore_errors=True)

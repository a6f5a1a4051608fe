"""A private Docker engine for end-to-end tests: ``docker_engine`` (session scope).

It runs its own ``dockerd`` with every path (data, exec root, pid file, socket) in a fresh
temporary directory, so it never touches a system Docker. vfs storage and no networking
(``--iptables=false --bridge=none``): the tests only ``docker import``, ``push`` and ``pull``,
nothing is ever ``docker run``. dockerd treats 127.0.0.0/8 as an insecure registry by
default, so a plain-HTTP registry on 127.0.0.1 needs no flag.

dockerd needs root. Outside CI a missing tool or a daemon that cannot start skips the tests;
with CI=true both fail.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from angos_core.testing.tools import require_tool, run_daemon, run_tool, unavailable

START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0
INSTALL_HINT = "install it with: apt-get install docker.io"


class DockerEngine:
    """A running private dockerd and a ``docker`` client bound to it."""

    def __init__(self, docker: str, root: Path) -> None:
        self.docker = docker
        self.root = root
        self.socket = root / "docker.sock"
        self.host = f"unix://{self.socket}"
        # A private client config too: no credential helpers or contexts from the user's home.
        self.env = {
            **os.environ,
            "DOCKER_HOST": self.host,
            "DOCKER_CONFIG": str(root / "client-config"),
        }
        self.env.pop("DOCKER_CONTEXT", None)

    def run(
        self,
        *args: str,
        check: bool = True,
        timeout: float = 300,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """``docker ARGS`` against this engine; on failure the error shows stdout and stderr."""
        return run_tool(
            [self.docker, *args],
            shown=f"docker {' '.join(args)}",
            env={**self.env, **(env or {})},
            check=check,
            timeout=timeout,
        )


def _unmount_under(root: Path) -> None:
    """Unmount anything dockerd left mounted below ``root`` (netns bind mounts, ...)."""
    try:
        with open("/proc/self/mounts", encoding="utf-8") as mounts:
            points = [line.split()[1] for line in mounts]
    except OSError:
        return
    prefix = f"{root}/"
    for point in sorted((p for p in points if p.startswith(prefix)), reverse=True):
        subprocess.run(["umount", "-l", point], check=False, capture_output=True)


@pytest.fixture(scope="session")
def docker_engine() -> Iterator[DockerEngine]:
    dockerd = require_tool("dockerd", INSTALL_HINT)
    docker = require_tool("docker", INSTALL_HINT)
    if os.geteuid() != 0:
        unavailable("dockerd needs root to start; run the tests as root", "the Docker engine")
    # Short paths under /tmp: unix socket paths (containerd's live under --exec-root) are
    # limited to 108 bytes, which pytest's tmp_path can exceed.
    root = Path(tempfile.mkdtemp(prefix="angos-dockerd-"))
    engine = DockerEngine(docker, root)
    log_path = root / "dockerd.log"
    cmd = [
        dockerd,
        "--storage-driver=vfs",
        "--iptables=false",
        "--ip-masq=false",
        "--bridge=none",
        "--userland-proxy=false",
        f"--data-root={root / 'data'}",
        f"--exec-root={root / 'exec'}",
        f"--pidfile={root / 'docker.pid'}",
        f"--host={engine.host}",
    ]
    try:
        with run_daemon(
            cmd,
            log=log_path,
            # dockerd's managed containerd is in its session: a SIGKILL ends both.
            ready=lambda: engine.run("info", check=False, timeout=10).returncode == 0,
            name="dockerd",
            what="the Docker engine",
            start_timeout=START_TIMEOUT_S,
            stop_timeout=STOP_TIMEOUT_S,
            poll_secs=0.2,
        ):
            yield engine
    finally:
        _unmount_under(root)
        shutil.rmtree(root, ignore_errors=True)


#: What tests import (fixtures and hooks come from angos_core.testing.pytest_plugin).
__all__ = [
    "INSTALL_HINT",
    "START_TIMEOUT_S",
    "STOP_TIMEOUT_S",
    "DockerEngine",
]

"""Starting, watching and stopping the two registries, each on a fresh temporary store.

Both are child processes in their own session bound to 127.0.0.1 on a free port. We stop
exactly the processes we started (by pid / process group), remove their stores, and read
their peak RSS (VmHWM) from /proc before stopping them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def find_tool(name: str) -> str | None:
    path = shutil.which(name)
    if path:
        return path
    for d in ("/usr/sbin", "/sbin", "/usr/local/sbin"):
        if os.access(p := f"{d}/{name}", os.X_OK):
            return p
    return None


def ensure_tools(tools: dict[str, str]) -> dict[str, str]:
    """Paths of the tools ``{command: debian package}``; apt-get installs any that are missing."""
    missing = {cmd: pkg for cmd, pkg in tools.items() if find_tool(cmd) is None}
    if missing:
        pkgs = sorted(set(missing.values()))
        sudo = [] if os.geteuid() == 0 else ["sudo"]
        print(f"installing {' '.join(pkgs)} with apt-get ...", file=sys.stderr)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run([*sudo, "apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run([*sudo, "apt-get", "install", "-y", "-qq", *pkgs], check=True, env=env)
    paths = {}
    for cmd in tools:
        path = find_tool(cmd)
        if path is None:
            raise SystemExit(f"{cmd} is still missing after apt-get install {tools[cmd]}")
        paths[cmd] = path
    return paths


def _proc_tree(pid: int) -> list[int]:
    """pid and all its descendants (so a multi-worker server is measured whole)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def _status_kib(pid: int, field_name: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _cpu_seconds(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        # utime, stime are fields 14, 15 of stat (index 11, 12 after the comm field)
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


@dataclass
class Registry:
    """One registry under test: a name, the command that serves it, and its store."""

    name: str
    workdir: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def store(self) -> Path:
        return self.workdir / "store"

    def command(self) -> list[str]:
        raise NotImplementedError

    def environment(self) -> dict[str, str] | None:
        """The server's environment; None: this process's."""
        return None

    def start(self, timeout: float = 30.0) -> None:
        self.store.mkdir(parents=True, exist_ok=True)
        cmd = self.command()
        self.log_path = self.workdir / "server.log"
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                cmd,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.workdir,
                env=self.environment(),
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited at start:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/v2/", timeout=2) as resp:
                    if resp.status == 200:
                        return
            except urllib.error.HTTPError as exc:
                if exc.code == 401:  # an auth-enabled registry is up, too
                    return
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.name} did not answer /v2/ within {timeout}s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def pids(self) -> list[int]:
        return _proc_tree(self.proc.pid) if self.proc and self.proc.poll() is None else []

    def peak_rss_kib(self) -> int:
        """Sum of VmHWM over the server's process tree (peak resident set, KiB)."""
        return sum(_status_kib(p, "VmHWM") for p in self.pids())

    def cpu_seconds(self) -> float:
        return sum(_cpu_seconds(p) for p in self.pids())

    def stop_signal(self) -> int:
        return signal.SIGTERM

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, grace: float = 10.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, self.stop_signal())
        try:
            self.proc.wait(grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)


@dataclass
class Distribution(Registry):
    binary: str = "docker-registry"
    #: The storage driver's block under ``storage:`` (indented two spaces); empty: the
    #: filesystem driver on :attr:`store`.
    storage_yaml: str = ""

    def command(self) -> list[str]:
        config = self.workdir / "config.yml"
        driver = self.storage_yaml or f"  filesystem:\n    rootdirectory: {self.store}\n"
        # Debian's default config, minus the fixed port and path: inmemory blob descriptor
        # cache, info logging to stderr (its access log included), deletes enabled.
        config.write_text(
            "version: 0.1\n"
            "log:\n  level: info\n"
            "storage:\n"
            f"{driver}"
            "  cache:\n    blobdescriptor: inmemory\n"
            "  delete:\n    enabled: true\n"
            f"http:\n  addr: 127.0.0.1:{self.port}\n"
        )
        return [self.binary, "serve", str(config)]

    def environment(self) -> dict[str, str] | None:
        # aws-sdk-go (the s3 driver) panics at start on AWS_CA_BUNDLE ("unable to load
        # custom CA bundle, HTTPClient's transport unsupported type"); the bench's S3 is
        # plain HTTP on loopback, so no CA is needed.
        return {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}


@dataclass
class Angos(Registry):
    executable: str = ""
    extra_toml: str = ""
    #: The store's table(s) (``[blob_store.s3]`` ...); empty: ``[blob_store.fs]`` on
    #: :attr:`store`.
    store_toml: str = ""
    #: A profiler's command line to run Angos under, e.g. ["py-spy", "record", ..., "--"].
    wrap: list[str] = field(default_factory=list)

    def command(self) -> list[str]:
        config = self.workdir / "config.toml"
        config.write_text(
            "[server]\n"
            'bind_address = "127.0.0.1"\n'
            f"port = {self.port}\n\n"
            + (self.store_toml or f'[blob_store.fs]\nroot_dir = "{self.store}"\n')
            + self.extra_toml
        )
        return [*self.wrap, self.exe(), "serve", "-c", str(config)]

    def exe(self) -> str:
        exe = self.executable or str(REPO_ROOT / ".venv" / "bin" / "angos")
        if not os.access(exe, os.X_OK):
            # A worktree has no .venv of its own: the angos beside the running Python.
            beside = str(Path(sys.executable).parent / "angos")
            exe = beside if os.access(beside, os.X_OK) else shutil.which("angos") or exe
        return exe

    def stop_signal(self) -> int:
        # A profiler writes its report on SIGINT (Ctrl-C), not on SIGTERM.
        return signal.SIGINT if self.wrap else signal.SIGTERM


def make_workdir(base: str | None, name: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=f"angos-bench-{name}-", dir=base))

"""A network-like link for one local server: its TCP replies on ``lo`` shaped by ``tc``.

On loopback a server's ``sendfile`` runs at GB/s, which no real upstream does. Shaping the
packets a server sends (TCP source port = its port) to a rate gives a bench the bandwidth of
a link without touching anything else on the machine: an ``htb`` root qdisc on ``lo``
whose default class is unthrottled (``UNTHROTTLED``, for every other flow, other tenants'
included) and one class at the rate, which u32 filters feed with the server's packets, IPv4
and IPv6. Only bandwidth: there is no added latency (``netem`` is not available here).

Needs root (CAP_NET_ADMIN) and ``tc``. A qdisc already on ``lo`` is refused, never replaced,
and ours is removed on the way out (context manager; callers turn SIGTERM into an exception
so that it runs). ``python -m bench.throttle --rate 1gbit`` checks that it works: it sends
the same bytes from a throttled and an unthrottled port and prints both rates.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from types import TracebackType

from bench.servers import find_tool

DEV = "lo"
#: Our root qdisc's handle: removal checks that the root is still ours before deleting it.
HANDLE = "15:"
#: The default class, for every flow but the throttled one: above anything loopback carries.
UNTHROTTLED = "100gbit"
#: Bucket of the throttled class. Loopback packets are GSO super-packets of up to 64 KiB, so
#: a bucket of tc's default size (about one MTU) would hold less than one of them.
BURST = "256k"

_UNITS = {"bit": 1, "kbit": 10**3, "mbit": 10**6, "gbit": 10**9, "tbit": 10**12}


class ThrottleError(Exception):
    """tc is missing, not permitted, or ``lo`` already has a qdisc; the message is one line."""


def parse_rate(text: str) -> int:
    """Bits per second of a tc rate such as ``1gbit`` or ``500mbit`` (SI units, as tc's)."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([a-z]+)", text.strip().lower())
    if not m or m.group(2) not in _UNITS:
        raise ValueError(f"{text!r} is not a rate like 1gbit or 500mbit ({', '.join(_UNITS)})")
    bits = int(float(m.group(1)) * _UNITS[m.group(2)])
    if bits <= 0:
        raise ValueError(f"{text!r} is not a positive rate")
    return bits


class Throttle:
    """``with Throttle(port, "1gbit"):`` shapes what 127.0.0.1:port (or [::1]:port) sends."""

    def __init__(self, port: int, rate: str) -> None:
        self.port = port
        self.rate = rate
        self.bits_per_second = parse_rate(rate)
        self._tc = find_tool("tc")
        self._installed = False

    def _run(self, *args: str) -> str:
        if self._tc is None:
            raise ThrottleError("tc not found (Debian package iproute2)")
        proc = subprocess.run([self._tc, *args], capture_output=True, text=True)
        if proc.returncode != 0:
            cause = (proc.stderr or proc.stdout).strip().splitlines()
            why = cause[-1] if cause else f"exit status {proc.returncode}"
            if "not permitted" in why:
                why += " (changing qdiscs needs CAP_NET_ADMIN: run as root)"
            raise ThrottleError(f"tc {' '.join(args)}: {why}")
        return proc.stdout

    def _root(self) -> str | None:
        """The root qdisc line of ``lo``, None for the default (``noqueue``, none at all)."""
        for line in self._run("qdisc", "show", "dev", DEV).splitlines():
            if " root " in f"{line} " and not line.startswith("qdisc noqueue"):
                return line.strip()
        return None

    def check(self) -> None:
        """Refuse early, before a bench spends minutes: lo is taken, or tc is not permitted."""
        if (line := self._root()) is not None:
            raise ThrottleError(f"{DEV} already has a root qdisc ({line}); not replacing it")
        # The only way to know that we may change qdiscs is to do it: add ours, remove it.
        self.install()
        self.remove()

    def install(self) -> None:
        if (line := self._root()) is not None:
            raise ThrottleError(f"{DEV} already has a root qdisc ({line}); not replacing it")
        # "add", not "replace": should another root appear after the check, tc fails instead
        # of clobbering it.
        self._run("qdisc", "add", "dev", DEV, "root", "handle", HANDLE, "htb", "default", "1")
        self._installed = True
        try:
            self._class("1", UNTHROTTLED, "")
            self._class("2", self.rate, BURST)
            # One prio per protocol: the kernel refuses a second protocol at the same prio.
            for prio, proto, match in (("1", "ip", "ip"), ("2", "ipv6", "ip6")):
                self._run(
                    *("filter", "add", "dev", DEV, "parent", HANDLE, "protocol", proto),
                    *("prio", prio, "u32", "match", match, "sport", str(self.port), "0xffff"),
                    *("flowid", f"{HANDLE}2"),
                )
        except BaseException:
            self.remove()
            raise

    def _class(self, minor: str, rate: str, burst: str) -> None:
        sizes = ("burst", burst, "cburst", burst) if burst else ()
        self._run(
            *("class", "add", "dev", DEV, "parent", HANDLE, "classid", f"{HANDLE}{minor}"),
            *("htb", "rate", rate, "ceil", rate, *sizes),
        )

    def sent_bytes(self) -> int:
        """Bytes the throttled class has sent so far: what the server sent through it."""
        out = self._run("-s", "class", "show", "dev", DEV, "classid", f"{HANDLE}2")
        m = re.search(r"Sent (\d+) bytes", out)
        if m is None:
            raise ThrottleError(f"no byte count for class {HANDLE}2 in: {out.strip()[:120]}")
        return int(m.group(1))

    def remove(self) -> None:
        """Delete our root qdisc (and so its classes and filters); a no-op once done."""
        if not self._installed:
            return
        # A second Ctrl-C or SIGTERM must not cut the removal short and leave lo shaped.
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        try:
            line = self._root()
            if line is not None and line.startswith(f"qdisc htb {HANDLE} root"):
                self._run("qdisc", "del", "dev", DEV, "root")
            self._installed = False
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)

    def __enter__(self) -> Throttle:
        self.install()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.remove()


@contextlib.contextmanager
def _sender(nbytes: int) -> Iterator[int]:
    """A port on 127.0.0.1 that sends ``nbytes`` to each connection, then closes it."""
    server = socket.create_server(("127.0.0.1", 0))
    chunk = b"\0" * (1 << 20)

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            # The client may leave early (Ctrl-C): a broken pipe just ends this connection.
            with conn, contextlib.suppress(OSError):
                left = nbytes
                while left > 0:
                    left -= conn.send(memoryview(chunk)[: min(left, len(chunk))])

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        # shutdown wakes the accept() of the thread; close alone does not on Linux.
        with contextlib.suppress(OSError):
            server.shutdown(socket.SHUT_RDWR)
        server.close()
        thread.join(5)


def _download(port: int) -> tuple[float, int]:
    got = 0
    start = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port)) as conn:
        while data := conn.recv(1 << 20):
            got += len(data)
    return time.perf_counter() - start, got


def probe(rate: str, nbytes: int) -> None:
    """Download ``nbytes`` from a throttled port, then from another: their MB/s."""
    with _sender(nbytes) as slow, _sender(nbytes) as fast, Throttle(slow, rate) as throttle:
        set_mb = throttle.bits_per_second / 8 / 1e6
        for label, port in ((f"throttled to {rate}", slow), ("another port", fast)):
            secs, got = _download(port)
            assert got == nbytes, (got, nbytes)
            mb = got / 1e6 / secs
            print(f"{label} (:{port}): {got / 1e6:.0f} MB in {secs:.2f} s, {mb:.0f} MB/s", end="")
            print(f" ({mb / set_mb:.2f}x the set {set_mb:.0f} MB/s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", default="1gbit", help="the throttled port's rate (1gbit)")
    parser.add_argument("--mb", type=int, default=250, help="MB sent from each port (250)")
    args = parser.parse_args()

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_term)
    try:
        probe(args.rate, args.mb * 1_000_000)
    except (ThrottleError, ValueError) as exc:
        raise SystemExit(f"bench.throttle: --rate {args.rate}: {exc}") from None


if __name__ == "__main__":
    main()

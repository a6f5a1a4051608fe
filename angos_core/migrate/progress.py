"""Progress of a migration: a tqdm bar on a terminal, a line every few seconds otherwise.

tqdm: pure Python with no dependencies of its own, maintained, and it already knows rate,
ETA and terminal width; a plain log line is what a job runner's log wants instead.
"""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Any, TextIO

from angos_core.migrate.report import human_bytes

if TYPE_CHECKING:
    from tqdm import tqdm

#: Seconds between two progress lines when stderr is not a terminal.
LOG_INTERVAL_SECS = 10.0


class Progress:
    """Objects done out of a phase's total, and bytes copied, shown as they change."""

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        bar: bool | None = None,
        interval_secs: float = LOG_INTERVAL_SECS,
        quiet: bool = False,
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.bar = self.stream.isatty() if bar is None else bar
        self.interval = interval_secs
        self.quiet = quiet
        self._tqdm: tqdm[Any] | None = None
        self._phase = ""
        self._total = 0
        self._done = 0
        self._bytes = 0
        self._started = time.monotonic()
        self._last_line = 0.0

    def phase(self, name: str, total: int) -> None:
        self.close()
        self._phase, self._total, self._done, self._bytes = name, total, 0, 0
        self._started = self._last_line = time.monotonic()
        if self.quiet:
            return
        if self.bar:
            # Here, not at the top: a server in a live migration imports this package (its
            # stores are angos_core.migrate.live's) and never shows a bar.
            from tqdm import tqdm

            self._tqdm = tqdm(
                total=total, desc=name, unit="obj", file=self.stream, dynamic_ncols=True
            )
        else:
            self._line()

    def add_bytes(self, n: int) -> None:
        self._bytes += n
        if self._tqdm is not None:
            self._tqdm.set_postfix_str(self._bytes_text(), refresh=False)
        self._maybe_line()

    def advance(self, n: int = 1) -> None:
        self._done += n
        if self._tqdm is not None:
            self._tqdm.update(n)
        self._maybe_line()

    def _bytes_text(self) -> str:
        secs = max(time.monotonic() - self._started, 1e-6)
        return f"{human_bytes(self._bytes)}, {human_bytes(self._bytes / secs)}/s"

    def _maybe_line(self) -> None:
        if self.quiet or self.bar:
            return
        now = time.monotonic()
        if now - self._last_line >= self.interval:
            self._line()

    def _line(self) -> None:
        now = time.monotonic()
        self._last_line = now
        secs = now - self._started
        eta = ""
        if self._done and self._total > self._done:
            eta = f", ETA {secs / self._done * (self._total - self._done):.0f}s"
        print(
            f"angos migrate: {self._phase} {self._done}/{self._total}, {self._bytes_text()}{eta}",
            file=self.stream,
            flush=True,
        )

    def close(self) -> None:
        if self._tqdm is not None:
            self._tqdm.close()
            self._tqdm = None
        elif self._phase and not self.quiet and not self.bar:
            self._line()
        self._phase = ""

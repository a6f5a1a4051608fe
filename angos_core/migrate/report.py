"""What a migration pass did, per kind of object, for the summary and ``--json``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: The kinds of object a migration copies, in the order it makes them visible.
KINDS = (
    "blob",
    "manifest",
    "layer_link",
    "revision_link",
    "retention_time",
    "referrer_link",
    "tag_index",
    "tag",
)


@dataclass
class Counts:
    copied: int = 0
    skipped: int = 0
    failed: int = 0


@dataclass
class PassReport:
    counts: dict[str, Counts] = field(default_factory=lambda: {k: Counts() for k in KINDS})
    bytes_copied: int = 0
    seconds: float = 0.0
    failures: list[str] = field(default_factory=list)

    def copied(self, kind: str) -> None:
        self.counts[kind].copied += 1

    def skipped(self, kind: str) -> None:
        self.counts[kind].skipped += 1

    def failed(self, kind: str, what: str) -> None:
        self.counts.setdefault(kind, Counts()).failed += 1
        self.failures.append(f"{kind} {what}")

    @property
    def total_copied(self) -> int:
        return sum(c.copied for c in self.counts.values())

    @property
    def total_failed(self) -> int:
        return sum(c.failed for c in self.counts.values())

    def line(self) -> str:
        parts = [
            f"{kind} {c.copied} copied/{c.skipped} skipped/{c.failed} failed"
            for kind, c in self.counts.items()
        ]
        return f"{'; '.join(parts)}; {human_bytes(self.bytes_copied)} in {self.seconds:.1f}s"

    def as_json(self) -> dict[str, Any]:
        return {
            "counts": {k: vars(c).copy() for k, c in self.counts.items()},
            "bytes": self.bytes_copied,
            "seconds": round(self.seconds, 3),
            "failures": list(self.failures),
        }


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    raise AssertionError("unreachable")

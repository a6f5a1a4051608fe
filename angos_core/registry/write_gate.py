"""``[maintenance.read_only]`` in the domain: the one switch every write path asks.

Checked by each write operation when it starts (start, append, complete and cancel an
upload, mount, delete a blob, push and delete a manifest or tag) and again right before the
step that would make something visible (an upload's commit and link, a manifest's first
store write), so an upload or push that began before the switch and ends after it leaves
nothing behind but its session data (the upload purger removes that). Reads never ask.

The server switches it (:meth:`WriteGate.set`, from its live settings on startup and on
every reload); a :class:`~angos_core.registry.Registry` built by ``angos gc`` or ``angos
prune`` starts writable and stays so: operators run those during the maintenance window.
"""

from __future__ import annotations

from angos_core.errors import ReadOnlyMode


class WriteGate:
    def __init__(self, read_only: bool = False) -> None:
        self.read_only = read_only

    def set(self, read_only: bool) -> None:
        self.read_only = read_only

    def check(self) -> None:
        """Raise :class:`ReadOnlyMode` (405 ``UNSUPPORTED``) while read-only."""
        if self.read_only:
            raise ReadOnlyMode()

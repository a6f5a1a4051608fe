"""Which tests share a worker when the suite runs on several (scripts/test: ``-n 2 --dist
loadgroup``), by rule rather than by list, so a new test file joins the right group:

* ``e2e``: tests marked ``e2e``, anything under ``tests/e2e`` and any test using the
  ``docker_engine`` or ``containerd_engine`` fixture. One worker runs them all, so the
  session's dockerd starts once and no two daemon-driving clients compete for the disk.
* ``heavy``: tests marked ``heavy`` (gigabytes through S3, hundreds of concurrent clients,
  online migrations, fuzzing, soaks). One worker runs them one after another, so two
  memory- or CPU-hungry tests never overlap.

xdist's own ``xdist_group`` mark cannot carry this: xdist 3.8 passes the group by appending
it to the node id, which pytest 9.2's structured node ids ignore (pytest-xdist#1386), so the
tests silently spread over both workers. Here the workers write each test's group to a file
the controller's scheduler reads (the groups need the collected items: marks and fixtures
exist only on the workers). The largest groups are handed out first (xdist's
``--loadscope-reorder``, on by default), so neither long group starts last.

Without xdist (plain ``pytest``, or a plugin's own suite) nothing here runs.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import pytest

E2E = "e2e"
HEAVY = "heavy"
_E2E_DIR = Path(__file__).resolve().parents[1] / "e2e"
_DAEMON_FIXTURES = frozenset({"docker_engine", "containerd_engine"})
_INPUT_KEY = "angos_xdist_groups_dir"
_DIR_KEY = pytest.StashKey[Path]()


def group_of(item: pytest.Item) -> str | None:
    """The group ``item`` must run in, or None for "any worker"."""
    if (
        item.get_closest_marker(E2E) is not None
        or _E2E_DIR in Path(str(item.path)).parents
        or _DAEMON_FIXTURES.intersection(getattr(item, "fixturenames", ()))
    ):
        return E2E
    if item.get_closest_marker(HEAVY) is not None:
        return HEAVY
    return None


def _grouping(config: pytest.Config) -> bool:
    return bool(config.getoption("dist", None) == "loadgroup")


# --------------------------------------------------------------------------- controller


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    config: pytest.Config = node.config
    if not _grouping(config):
        return
    if _DIR_KEY not in config.stash:
        config.stash[_DIR_KEY] = Path(tempfile.mkdtemp(prefix="angos-xdist-groups-"))
    node.workerinput[_INPUT_KEY] = str(config.stash[_DIR_KEY])


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    if not _grouping(config):
        return None
    from xdist.scheduler import LoadScopeScheduling

    class GroupScheduling(LoadScopeScheduling):  # type: ignore[misc]
        """xdist's load-by-scope scheduling with the scope of a grouped test = its group."""

        _groups: dict[str, str] | None = None

        def _split_scope(self, nodeid: str) -> str:
            if self._groups is None:
                # Read once all workers have collected (schedule() runs after that).
                self._groups = {}
                for path in sorted(config.stash[_DIR_KEY].glob("*.json")):
                    self._groups.update(json.loads(path.read_text()))
            group = self._groups.get(nodeid)
            return f"group:{group}" if group else nodeid

    return GroupScheduling(config, log)


def pytest_unconfigure(config: pytest.Config) -> None:
    if _DIR_KEY in config.stash:
        directory = config.stash[_DIR_KEY]
        for path in directory.glob("*.json"):
            path.unlink()
        directory.rmdir()


# --------------------------------------------------------------------------- worker


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    workerinput = getattr(config, "workerinput", None)
    if workerinput is None or _INPUT_KEY not in workerinput:
        return
    groups = {item.nodeid: group for item in items if (group := group_of(item)) is not None}
    target = Path(workerinput[_INPUT_KEY]) / f"{os.environ['PYTEST_XDIST_WORKER']}.json"
    partial = target.with_suffix(".tmp")
    partial.write_text(json.dumps(groups))
    partial.replace(target)  # whole or absent when the controller reads it

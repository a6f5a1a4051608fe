"""The code stays ruff- and mypy-clean: the checks run with the suite, as CI runs it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _packages() -> list[str]:
    """Every source and test tree mypy checks: core, bench, tests, each plugin and example."""
    paths = ["angos_core", "bench", "tests"]
    for pyproject in sorted(
        [*ROOT.glob("plugins/*/pyproject.toml"), *ROOT.glob("examples/*/pyproject.toml")]
    ):
        project = pyproject.parent
        paths += [
            str(p.relative_to(ROOT))
            for p in sorted(project.glob("angos_*"))
            if p.is_dir() and not p.name.endswith(".egg-info")
        ]
        if (project / "tests").is_dir():
            paths.append(str((project / "tests").relative_to(ROOT)))
    return paths


def _run(*args: str) -> None:
    proc = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("check", [("check",), ("format", "--check")], ids=["check", "format"])
def test_ruff(check: tuple[str, ...]) -> None:
    _run(str(BIN / "ruff"), *check, ".")


@pytest.mark.heavy  # a core for half a minute
def test_mypy() -> None:
    _run(str(BIN / "mypy"), *_packages())

"""``angos check-config`` on ``[maintenance.read_only]``: its keys checked like any core
table, and the mode named when it is on."""

from __future__ import annotations

from pathlib import Path

from tests.support.cli import run_angos


def write(tmp_path: Path, table: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(f'[blob_store.fs]\nroot_dir = "{tmp_path / "data"}"\n{table}')
    return path


def test_bad_keys_are_named(tmp_path: Path) -> None:
    path = write(tmp_path, '[maintenance.read_only]\nenabled = "yes"\nuntil = 3\n')
    result = run_angos(["check-config", "-c", str(path)], tmp_path)
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert "angos: config error: maintenance.read_only.enabled: expected bool, got str 'yes'" in (
        lines
    )
    assert any(
        line.startswith("angos: config error: maintenance.read_only.until: unknown key")
        for line in lines
    )


def test_the_mode_is_named_when_on(tmp_path: Path) -> None:
    on = run_angos(
        ["check-config", "-c", str(write(tmp_path, "[maintenance.read_only]\nenabled = true\n"))],
        tmp_path,
    )
    assert on.returncode == 0, on.stderr
    assert on.stdout.rstrip().endswith("; read-only")
    off = run_angos(["check-config", "-c", str(write(tmp_path, ""))], tmp_path)
    assert off.returncode == 0 and "read-only" not in off.stdout

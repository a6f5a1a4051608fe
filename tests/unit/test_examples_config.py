"""Every deployment config under examples/ loads with the installed plugins.

Users copy these files, so a key that drifts from a plugin's config class must fail here.
A config naming a plugin that is not installed skips outside CI and fails under CI=true,
where the test command installs every plugin.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

from angos_core.cli import main as angos_main
from angos_core.config import AngosConfig, load_config
from angos_core.plugins import BackendCatalogue, Kind, load_catalogue
from tests.support.tools import IN_CI

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
CONFIGS = sorted(EXAMPLES.glob("*.toml"))


def _one_name(table: Any) -> str | None:
    return next(iter(table)) if isinstance(table, dict) and len(table) == 1 else None


def backends_named(data: dict[str, Any]) -> list[tuple[Kind, str]]:
    """The (kind, name) pairs a config selects, defaults included."""
    blob = _one_name(data.get("blob_store"))
    meta = _one_name(data.get("metadata_store")) or blob
    wanted: list[tuple[Kind, str]] = []
    if blob:
        wanted.append(("blob_store", blob))
    if meta:
        wanted.append(("metadata_store", meta))
    own = data.get("metadata_store", {}).get(meta, {}) if meta else {}
    locks = [k for k, v in own.items() if isinstance(v, dict)]
    wanted += [("lock_provider", name) for name in locks or ["memory"]]
    wanted.append(("cache", _one_name(data.get("cache")) or "memory"))
    return wanted


@pytest.fixture(scope="module")
def catalogue() -> BackendCatalogue:
    return load_catalogue()


def test_examples_exist() -> None:
    names = {p.name for p in CONFIGS}
    assert {"single-node-fs.toml", "s3-only.toml", "split-s3-blobs-fs-metadata.toml"} <= names


def require_plugins(path: Path, data: dict[str, Any], catalogue: BackendCatalogue) -> None:
    missing = [
        f"{kind} {name!r}" for kind, name in backends_named(data) if not catalogue.has(kind, name)
    ]
    if missing:
        message = f"{path.name} needs {', '.join(missing)}, not installed"
        if IN_CI:
            pytest.fail(message + " (CI=true: the test command installs every plugin)")
        pytest.skip(message)


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_example_config_loads(path: Path, catalogue: BackendCatalogue) -> None:
    data = tomllib.loads(path.read_text())
    require_plugins(path, data, catalogue)

    config = load_config(path, catalogue)

    assert isinstance(config, AngosConfig)
    assert config.source == str(path)
    selected = {
        ("blob_store", config.blob_store.name),
        ("metadata_store", config.metadata_store.name),
        ("lock_provider", config.lock_provider.name),
        ("cache", config.cache.name),
    }
    assert selected == set(backends_named(data))
    # Each backend's factory accepts its parsed settings (no I/O happens before open()).
    for choice in (config.blob_store, config.metadata_store, config.lock_provider, config.cache):
        backend = choice.build()
        assert backend.name == choice.name


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_check_config_accepts_example(
    path: Path, catalogue: BackendCatalogue, capsys: pytest.CaptureFixture[str]
) -> None:
    require_plugins(path, tomllib.loads(path.read_text()), catalogue)

    code = angos_main(["check-config", "-c", str(path)])

    out, err = capsys.readouterr()
    assert code == 0, err
    assert out.startswith(f"config OK ({path})"), out


def test_readme_config_example_is_valid(
    tmp_path: Path, catalogue: BackendCatalogue, capsys: pytest.CaptureFixture[str]
) -> None:
    """The TOML a newcomer copies from the README passes check-config as written."""
    readme = (EXAMPLES.parent / "README.md").read_text()
    start = readme.index("```toml\n") + len("```toml\n")
    path = tmp_path / "readme.toml"
    path.write_text(readme[start : readme.index("```", start)])
    require_plugins(path, tomllib.loads(path.read_text()), catalogue)

    code = angos_main(["check-config", "-c", str(path)])

    out, err = capsys.readouterr()
    assert code == 0, err
    assert "blob_store=s3, metadata_store=fs, lock_provider=redis, cache=redis" in out

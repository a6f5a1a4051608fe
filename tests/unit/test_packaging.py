"""Every package is release-ready: metadata, one version, wheels and sdists twine accepts.

The one source of the version is ``angos_core.__version__``. Core's pyproject.toml reads it;
each plugin's carries a copy stamped by scripts/set-version (an sdist builds without this
checkout, so it cannot read the source at build time). These tests fail on a package the
stamp missed, so the copies cannot drift.
"""

from __future__ import annotations

import ast
import email.message
import email.parser
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path
from typing import Any

import pytest
import trove_classifiers  # the dev extra, like build and twine

REPO = next(p for p in Path(__file__).resolve().parents if (p / "scripts" / "lib.sh").exists())
EXPECTED = {
    "angos-core",
    "angos-fs",
    "angos-memory",
    "angos-s3",
    "angos-redis",
    "angos-auth-token",
    "angos-sqlite",
    "angos-auth-basic",
    "angos-auth-oidc",
    "angos-auth-webhook",
}


def package_dirs() -> list[Path]:
    """The packages scripts/build-wheels builds: its own list, so the test checks that one."""
    out = subprocess.run(
        ["bash", "-c", ". scripts/lib.sh && angos_package_dirs"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return [REPO / d for d in out]


def pyproject(root: Path) -> dict[str, Any]:
    with (root / "pyproject.toml").open("rb") as f:
        project: dict[str, Any] = tomllib.load(f)
    return project


def source_version(root: Path = REPO) -> str:
    """``angos_core.__version__``, read as setuptools reads it (the literal, no import)."""
    tree = ast.parse((root / "angos_core" / "__init__.py").read_text())
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and [getattr(t, "id", None) for t in node.targets] == ["__version__"]
            and isinstance(node.value, ast.Constant)
        ):
            return str(node.value.value)
    raise AssertionError("angos_core/__init__.py has no literal __version__")


def version_problems(root: Path) -> list[str]:
    """Every package under root whose version or core pin is not the one source's."""
    version = source_version(root)
    problems = []
    core = pyproject(root)
    if "version" not in core["project"].get("dynamic", []) or core["tool"]["setuptools"]["dynamic"][
        "version"
    ] != {"attr": "angos_core.__version__"}:
        problems.append("pyproject.toml: version must be dynamic from angos_core.__version__")
    for path in sorted([*root.glob("plugins/*/"), *root.glob("examples/*/")]):
        if not (path / "pyproject.toml").exists():
            continue
        project = pyproject(path)["project"]
        where = path.relative_to(root)
        if project.get("version") != version:
            problems.append(f"{where}: version {project.get('version')!r}, source {version!r}")
        if f"angos-core~={version}" not in project["dependencies"]:
            problems.append(f"{where}: dependencies {project['dependencies']} lack angos-core~=")
    return problems


def test_every_package_is_found() -> None:
    assert {pyproject(d)["project"]["name"] for d in package_dirs()} == EXPECTED


def test_every_version_is_the_one_source() -> None:
    assert re.fullmatch(r"\d+\.\d+\.\d+.*", source_version())
    assert version_problems(REPO) == []


def test_every_package_has_release_metadata() -> None:
    license_text = (REPO / "LICENSE").read_text()
    assert "Apache License" in license_text and "Version 2.0, January 2004" in license_text
    for d in package_dirs():
        project = pyproject(d)["project"]
        where = d.relative_to(REPO)
        assert project["license"] == "Apache-2.0", where  # an SPDX expression (PEP 639)
        assert project["license-files"] == ["LICENSE"], where
        # Each sdist carries its own copy; they must stay the one license.
        assert (d / "LICENSE").read_text() == license_text, where
        assert (d / project["readme"]).read_text().startswith("# "), where
        assert {"Homepage", "Source", "Issues"} <= project["urls"].keys(), where
        classifiers = project["classifiers"]
        unknown = [c for c in classifiers if c not in trove_classifiers.classifiers]
        assert not unknown, f"{where}: PyPI refuses unknown classifiers {unknown}"
        # PEP 639: a license expression excludes the License :: classifiers.
        assert not [c for c in classifiers if c.startswith("License ::")], where
        assert "Typing :: Typed" in classifiers and list(d.glob("*/py.typed")), where
        assert pyproject(d)["build-system"]["requires"] == ["setuptools>=77"], where


def copy_version_files(dest: Path) -> None:
    for path in [
        REPO / "angos_core" / "__init__.py",
        *(d / "pyproject.toml" for d in package_dirs()),
    ]:
        target = dest / path.relative_to(REPO)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target)


def set_version(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(REPO / "scripts" / "set-version"), *args],
        capture_output=True,
        text=True,
    )


def test_set_version_stamps_every_package(tmp_path: Path) -> None:
    copy_version_files(tmp_path)
    before = {p: p.read_text() for p in tmp_path.rglob("*") if p.is_file()}

    proc = set_version("7.8.9rc1", "--root", str(tmp_path))

    assert proc.returncode == 0, proc.stderr
    assert source_version(tmp_path) == "7.8.9rc1"
    assert version_problems(tmp_path) == []
    # Only the version lines and the pins changed; comments and layout stay.
    for path, old in before.items():
        new = path.read_text().splitlines()
        assert len(new) == len(old.splitlines()), path
        changed = [b for a, b in zip(old.splitlines(), new, strict=True) if a != b]
        if path == tmp_path / "pyproject.toml":
            assert changed == [], "core's version is dynamic: nothing to stamp"
        elif path.name == "__init__.py":
            assert changed == ['__version__ = "7.8.9rc1"']
        else:
            assert len(changed) == 2 and all("7.8.9rc1" in line for line in changed), changed


def test_set_version_refuses_and_writes_nothing(tmp_path: Path) -> None:
    copy_version_files(tmp_path)
    proc = set_version("v1", "--root", str(tmp_path))
    assert proc.returncode == 2 and "not a version like 0.2.0" in proc.stderr

    # A plugin that does not pin angos-core~= cannot follow the scheme: named, nothing written.
    fs = tmp_path / "plugins" / "angos-fs" / "pyproject.toml"
    fs.write_text(fs.read_text().replace('"angos-core~=', '"angos-core>='))
    before = {p: p.read_text() for p in tmp_path.rglob("*") if p.is_file()}
    proc = set_version("0.9.0", "--root", str(tmp_path))
    assert proc.returncode != 0
    assert "plugins/angos-fs/pyproject.toml: expected one angos-core~= dependency" in proc.stderr
    assert {p: p.read_text() for p in before} == before


def metadata(text: str) -> email.message.Message:
    return email.parser.Parser().parsestr(text)


@pytest.mark.slow
@pytest.mark.heavy  # nine builds at once
def test_build_wheels_builds_every_package_and_twine_accepts_them(tmp_path: Path) -> None:
    out = tmp_path / "dist"
    out.mkdir()
    stale = out / "angos_core-0.0.1-py3-none-any.whl"
    stale.write_text("an older build")
    env = {**os.environ, "BUILD_PYTHON": sys.executable}

    proc = subprocess.run(
        ["bash", str(REPO / "scripts" / "build-wheels"), str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )

    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not stale.exists(), "an older build would be checked and could be installed"
    version = source_version()
    wheels = sorted(out.glob("*.whl"))
    sdists = sorted(out.glob("*.tar.gz"))
    assert len(wheels) == len(sdists) == len(EXPECTED), [p.name for p in out.iterdir()]
    assert proc.stdout.count("PASSED") == 2 * len(EXPECTED), proc.stdout  # twine check
    names = set()
    for wheel in wheels:
        with zipfile.ZipFile(wheel) as z:
            dist_info = f"{wheel.name.split('-')[0]}-{version}.dist-info"
            meta = metadata(z.read(f"{dist_info}/METADATA").decode())
            assert f"{dist_info}/licenses/LICENSE" in z.namelist(), wheel.name
        names.add(meta["Name"])
        assert meta["Version"] == version, wheel.name
        assert meta["License-Expression"] == "Apache-2.0", wheel.name
        if meta["Name"] != "angos-core":
            assert f"angos-core~={version}" in meta.get_all("Requires-Dist", []), wheel.name
    assert names == EXPECTED
    for sdist in sdists:
        top = sdist.name.removesuffix(".tar.gz")
        with tarfile.open(sdist) as t:
            members = set(t.getnames())
            pkg_info = t.extractfile(f"{top}/PKG-INFO")
            assert pkg_info is not None
            meta = metadata(pkg_info.read().decode())
        assert {f"{top}/LICENSE", f"{top}/README.md", f"{top}/pyproject.toml"} <= members
        assert meta["Version"] == version, sdist.name

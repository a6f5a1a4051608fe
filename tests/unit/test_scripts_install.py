"""What scripts/serve, scripts/test and scripts/build-wheels install (scripts/lib.sh).

pip runs only when a profile's stamp is stale, and the Debian packages scripts/test installs
start nothing, then or at boot. Both run here against fakes (a fake venv Python, fake
apt-get, dpkg and systemctl on PATH), so no package is installed and nothing is started.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

REPO = next(p for p in Path(__file__).resolve().parents if (p / "scripts" / "lib.sh").exists())

FAKE_PYTHON = """#!/bin/sh
if [ "$1" = -VV ]; then echo "Python ${FAKE_PY_VERSION:-3.11.7} (fake)"; exit 0; fi
if [ "$1 $2 $3" = "-m pip install" ]; then
    echo "$PWD|$*" >>"$FAKE_PIP_LOG"
    exit "${FAKE_PIP_RC:-0}"
fi
echo "fake python: unexpected $*" >&2
exit 3
"""


def write_exe(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o755)


def fake_checkout(tmp_path: Path) -> Path:
    """lib.sh and every pyproject.toml of this checkout, with a .venv whose python is fake."""
    root = tmp_path / "checkout"
    (root / "scripts").mkdir(parents=True)
    shutil.copy(REPO / "scripts" / "lib.sh", root / "scripts" / "lib.sh")
    for pyproject in [REPO / "pyproject.toml", *REPO.glob("*/*/pyproject.toml")]:
        rel = pyproject.relative_to(REPO)
        if rel.parts[0] in ("plugins", "examples") or len(rel.parts) == 1:
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(pyproject, root / rel)
    write_exe(root / ".venv" / "bin" / "python", FAKE_PYTHON)
    return root


class Checkout:
    def __init__(self, tmp_path: Path) -> None:
        self.root = fake_checkout(tmp_path)
        self.log = tmp_path / "pip.log"
        self.log.touch()
        self.env = {**os.environ, "FAKE_PIP_LOG": str(self.log)}

    def ensure(self, profile: str, **env: str) -> list[str]:
        """Run angos_venv_ensure PROFILE; the pip invocations it made."""
        before = self.log.read_text().splitlines()
        proc = subprocess.run(
            ["bash", "-c", f"set -euo pipefail; . scripts/lib.sh; angos_venv_ensure {profile}"],
            cwd=self.root,
            env={**self.env, **env},
            capture_output=True,
            text=True,
        )
        calls = self.log.read_text().splitlines()[len(before) :]
        if proc.returncode != 0:
            raise RuntimeError(f"exit {proc.returncode}: {proc.stderr}")
        return calls


def test_pip_runs_once_until_a_pyproject_or_python_changes(tmp_path: Path) -> None:
    co = Checkout(tmp_path)

    assert co.ensure("serve") == [
        f"{co.root}|-m pip install --quiet --disable-pip-version-check "
        "-e . -e plugins/angos-fs -e plugins/angos-memory -e plugins/angos-auth-basic"
    ]
    assert co.ensure("serve") == []  # installed and unchanged: no pip

    (test_call,) = co.ensure("test")
    assert "-e .[test,dev]" in test_call and "-e plugins/angos-s3[test]" in test_call
    assert co.ensure("test") == []
    # The test profile is a superset: it covers serve and build without their own stamps.
    (co.root / ".venv" / ".angos-serve.stamp").unlink()
    assert co.ensure("serve") == [] and co.ensure("build") == []

    # Any change to a pyproject.toml (dependencies, extras, entry points, version) installs.
    fs = co.root / "plugins" / "angos-fs" / "pyproject.toml"
    fs.write_text(fs.read_text() + "\n# changed\n")
    assert len(co.ensure("serve")) == 1
    assert len(co.ensure("test")) == 1
    # So does a new plugin directory, and another Python in the venv.
    write_exe(co.root / "plugins" / "angos-new" / "pyproject.toml", '[project]\nname = "x"\n')
    (call,) = co.ensure("test")
    assert "-e plugins/angos-new " in call + " "
    assert len(co.ensure("test", FAKE_PY_VERSION="3.12.1")) == 1
    assert co.ensure("test", FAKE_PY_VERSION="3.12.1") == []


def test_a_failed_pip_leaves_no_stamp(tmp_path: Path) -> None:
    co = Checkout(tmp_path)
    try:
        co.ensure("serve", FAKE_PIP_RC="1")
    except RuntimeError as exc:
        assert "exit 1" in str(exc)
    else:
        raise AssertionError("a failing pip must fail the script")
    assert len(co.ensure("serve")) == 1  # tried again, not taken as installed


FAKE_TOOLS = {
    # Installed packages, as dpkg-query prints them with the format lib.sh asks for.
    "dpkg-query": 'cat "$FAKE/installed"\n',
    # install: record the policy-rc.d in force and what it answers, then "install" each
    # package and a dependency.
    "apt-get": """echo "apt-get $*" >>"$FAKE/calls"
[ "$1" = install ] || exit 0
cp "$ANGOS_POLICY_RC_D" "$FAKE/policy-during-install"
"$ANGOS_POLICY_RC_D" start; echo "$?" >"$FAKE/policy-answer"
[ -z "${FAKE_APT_FAIL:-}" ] || exit 100
for arg in "$@"; do
    case "$arg" in -*|install) ;; *) echo "installed $arg" >>"$FAKE/installed" ;; esac
done
echo "installed libdep" >>"$FAKE/installed"
""",
    "dpkg": """[ "$1" = -L ] || exit 2
case "$2" in
daemon) printf '%s\\n' /lib/systemd/system/daemon.service /lib/systemd/system/daemon.socket \\
    /lib/systemd/system/daemon@.service /usr/lib/systemd/system/daemon.timer \\
    /lib/systemd/system/daemon.service.d/override.conf \\
    /lib/systemd/system/multi-user.target.wants/static.service \\
    /etc/init.d/daemon /usr/bin/daemon ;;
libdep) printf '%s\\n' /etc/init.d/depd /usr/lib/libdep.so ;;
preinstalled) printf '%s\\n' /lib/systemd/system/pre.service /etc/init.d/pre ;;
esac
""",
    "systemctl": 'echo "systemctl $*" >>"$FAKE/calls"\n',
    "update-rc.d": 'echo "update-rc.d $*" >>"$FAKE/calls"\n',
    "deb-systemd-helper": 'echo "deb-systemd-helper $*" >>"$FAKE/calls"\n',
    "sudo": 'exec "$@"\n',
}


def apt_install(tmp_path: Path, policy: str | None, **env: str) -> subprocess.CompletedProcess[str]:
    fake = tmp_path / "fake"
    for name, body in FAKE_TOOLS.items():
        write_exe(fake / "bin" / name, "#!/bin/sh\n" + body)
    (fake / "installed").write_text("installed preinstalled\nhalf-installed broken\n")
    (fake / "calls").write_text("")
    policy_path = fake / "policy-rc.d"
    if policy is not None:
        write_exe(policy_path, policy)
    return subprocess.run(
        ["bash", "-c", "set -euo pipefail; . scripts/lib.sh; angos_apt_install daemon"],
        cwd=REPO,
        env={
            **os.environ,
            **env,
            "FAKE": str(fake),
            "ANGOS_POLICY_RC_D": str(policy_path),
            "PATH": f"{fake / 'bin'}:{os.environ['PATH']}",
        },
        capture_output=True,
        text=True,
    )


def test_apt_install_starts_nothing_and_disables_what_it_installed(tmp_path: Path) -> None:
    own_policy = "#!/bin/sh\n# the machine's own\nexit 0\n"
    proc = apt_install(tmp_path, own_policy)
    fake = tmp_path / "fake"

    assert proc.returncode == 0, proc.stderr
    # While apt ran, every start was forbidden (101); the machine's own policy is back after.
    assert (fake / "policy-answer").read_text().strip() == "101"
    assert "exit 101" in (fake / "policy-during-install").read_text()
    assert (fake / "policy-rc.d").read_text() == own_policy
    calls = (fake / "calls").read_text().splitlines()
    assert calls[0] == "apt-get update -q"
    assert calls[1] == "apt-get install -y -q --no-install-recommends daemon"
    # Each unit and init script of the new packages (the dependency too) is disabled at boot;
    # templates, drop-ins, a package's static .wants links and what was there before are not.
    # Without a running systemd (no /run/systemd/system) there is nothing to stop (--now).
    now = " --now" if Path("/run/systemd/system").is_dir() else ""
    assert sorted(calls[2:]) == sorted(
        [
            f"systemctl disable --quiet{now} daemon.service",
            f"systemctl disable --quiet{now} daemon.socket",
            f"systemctl disable --quiet{now} daemon.timer",
            "update-rc.d daemon disable",
            "update-rc.d depd disable",
        ]
    )


def test_apt_install_removes_its_policy_when_there_was_none(tmp_path: Path) -> None:
    proc = apt_install(tmp_path, None)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "fake" / "policy-answer").read_text().strip() == "101"
    assert not (tmp_path / "fake" / "policy-rc.d").exists()


def test_a_failed_apt_install_restores_the_policy_and_disables_nothing(tmp_path: Path) -> None:
    own_policy = "#!/bin/sh\nexit 0\n"
    proc = apt_install(tmp_path, own_policy, FAKE_APT_FAIL="1")
    fake = tmp_path / "fake"
    assert proc.returncode == 100
    assert (fake / "policy-rc.d").read_text() == own_policy
    assert [c for c in (fake / "calls").read_text().splitlines() if "apt-get" not in c] == []

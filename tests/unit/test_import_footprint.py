"""A registry pays for what its config names: the embedded default (fs storage, no
authentication, no policy) imports neither PyJWT, cryptography nor the CEL library, each
several MiB of resident memory in every process (idle server: 48 MiB, against 63 MiB
when every installed plugin's dependencies were imported up front), nor what only a
maintenance command, a configured user or another store uses (44 MiB idle without them)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HEAVY = ("jwt", "cryptography", "cel_expr_python")

PROBE = """
import json, sys
from angos_core.config import load_config
from angos_core.plugins import load_catalogue
from angos_core.http.app import make_app
make_app(load_config(sys.argv[1], load_catalogue()))
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in {heavy})))
"""


def loaded_by(toml: str, tmp_path: Path) -> list[str]:
    config = tmp_path / "config.toml"
    config.write_text(toml)
    probe = PROBE.format(heavy=repr(set(HEAVY)))
    out = subprocess.run(
        [sys.executable, "-c", probe, str(config)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    return sorted({m.split(".")[0] for m in json.loads(out)})


def test_the_embedded_default_imports_no_token_crypto_or_cel(tmp_path: Path) -> None:
    assert loaded_by(f'[blob_store.fs]\nroot_dir = "{tmp_path}"\n', tmp_path) == []


def test_a_config_naming_them_imports_them(tmp_path: Path) -> None:
    toml = (
        f'[blob_store.fs]\nroot_dir = "{tmp_path}"\n'
        '[auth.token_service]\nsecret_key = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="\n'
        '[global.access_policy]\ndefault = "allow"\nrules = ["false"]\n'
    )
    assert loaded_by(toml, tmp_path) == sorted(HEAVY)


#: What ``angos serve`` on the default config leaves out: the password hashing libraries
#: (users configured), sqlite3 (the example store), tqdm and the maintenance commands'
#: code (gc, prune, scrub, migrate), ctypes (forked workers only). About 3 MiB together.
SERVE_LEAVES_OUT = (
    "argon2",
    "bcrypt",
    "sqlite3",
    "tqdm",
    "ctypes",
    "getpass",
    "angos_core.registry.gc",
    "angos_core.registry.prune",
    "angos_core.registry.scrub",
    "angos_core.migrate.copy",
    "angos_core.migrate.verify",
)

SERVE_PROBE = """
import json, sys
import angos_core.cli  # the `angos` command's module, as `angos serve` imports it
from angos_core.config import load_config
from angos_core.plugins import load_catalogue
from angos_core.http.app import make_app
make_app(load_config(sys.argv[1], load_catalogue()))
print(json.dumps(sorted(m for m in {names} if m in sys.modules)))
"""


def test_serve_on_the_default_imports_no_command_or_unselected_backend_code(
    tmp_path: Path,
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f'[blob_store.fs]\nroot_dir = "{tmp_path}"\n')
    out = subprocess.run(
        [sys.executable, "-c", SERVE_PROBE.format(names=repr(SERVE_LEAVES_OUT)), str(config)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    assert json.loads(out) == []

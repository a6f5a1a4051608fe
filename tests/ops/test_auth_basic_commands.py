"""``angos hash-password`` and the config errors of Basic identities as operators see them
(``check-config``, ``serve``)."""

from __future__ import annotations

import getpass
import io
import subprocess
import sys
from pathlib import Path

import pytest
from angos_auth_basic.hashing import cost_of, verify_password
from angos_auth_basic.testing import cheap_argon2

from angos_core.cli import main

ANGOS = [sys.executable, "-c", "import sys; from angos_core.cli import main; sys.exit(main())"]


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_hash_password_from_stdin(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("correct horse\n"))
    assert main(["hash-password"]) == 0
    out, err = capsys.readouterr()
    encoded = out.strip()
    assert encoded.startswith("$argon2id$v=19$m=65536,t=3,p=4$") and err == ""
    assert verify_password(encoded, "correct horse")  # the final newline is not part of it
    assert not verify_password(encoded, "correct horse\n")


def test_hash_password_bcrypt_for_htpasswd(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("pw with spaces \r\n"))
    assert main(["hash-password", "--bcrypt"]) == 0
    encoded = capsys.readouterr().out.strip()
    assert encoded.startswith("$2b$12$") and cost_of(encoded).params == (12,)
    assert verify_password(encoded, "pw with spaces ")


def test_hash_password_prompts_twice_on_a_terminal(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    prompts: list[str] = []
    answers = iter(["s3cret", "s3cret", "s3cret", "typo"])

    def fake_getpass(prompt: str = "") -> str:
        prompts.append(prompt)
        return next(answers)

    monkeypatch.setattr(sys, "stdin", Terminal("never read\n"))
    monkeypatch.setattr(getpass, "getpass", fake_getpass)
    assert main(["hash-password"]) == 0
    assert prompts == ["Password: ", "Repeat password: "]
    assert verify_password(capsys.readouterr().out.strip(), "s3cret")

    assert main(["hash-password"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.strip() == "angos: hash-password: the passwords differ; nothing was hashed"


@pytest.mark.parametrize(
    ("stdin", "expected"),
    [
        ("", "the password is empty"),
        ("\n", "the password is empty"),
        ("one\ntwo\n", "more than one line"),
        ("x" * 73, "72 bytes"),  # --bcrypt below
    ],
)
def test_hash_password_refusals(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], stdin: str, expected: str
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    assert main(["hash-password", "--bcrypt"]) == 1
    out, err = capsys.readouterr()
    assert out == "" and expected in err and len(err.splitlines()) == 1


def test_hash_password_never_from_argv(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["hash-password", "hunter2"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert "takes no password argument" in err and "stdin" in err
    assert "hunter2" not in err


def test_hash_password_without_the_plugin(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "angos_auth_basic.hashing", None)  # import fails
    monkeypatch.setattr(sys, "stdin", io.StringIO("pw\n"))
    assert main(["hash-password"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.splitlines()) == 1
    assert "needs the angos-auth-basic plugin" in err
    assert "pip install -e plugins/angos-auth-basic" in err


def test_hash_password_console_command_reads_a_pipe() -> None:
    proc = subprocess.run(
        [*ANGOS, "hash-password"], input="piped pw\n", capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert verify_password(proc.stdout.strip(), "piped pw")
    assert "piped pw" not in proc.stdout + proc.stderr


def test_check_config_names_the_password_key_never_its_value(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "c.toml"
    config.write_text(
        f'[blob_store.fs]\nroot_dir = "{tmp_path / "d"}"\n'
        '[auth.identity.alice]\nusername = "alice"\npassword = "hunter2"\n'
        '[auth.identity.bob]\nusername = "bob"\n'
        'password = "$argon2i$v=19$m=16,t=2,p=1$c2FsdHNhbHQ$aGFzaA"\n'
    )
    assert main(["check-config", "-c", str(config)]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert [line.split(": ", 3)[2] for line in lines] == [
        "auth.identity.alice.password",
        "auth.identity.bob.password",
    ]
    assert all("angos hash-password" in line for line in lines)
    assert "plaintext" in lines[0] and "only Argon2id" in lines[1]
    assert not any("hunter2" in line or "aGFzaA" in line for line in lines)


def test_check_config_accepts_hashes_and_prints_none(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    encoded = cheap_argon2("alice-pw")
    config = tmp_path / "c.toml"
    config.write_text(
        f'[blob_store.fs]\nroot_dir = "{tmp_path / "d"}"\n'
        f'[auth.identity.alice]\nusername = "alice"\npassword = "{encoded}"\n'
    )
    assert main(["check-config", "-c", str(config)]) == 0
    out, err = capsys.readouterr()
    assert "config OK" in out and encoded not in out + err


def test_serve_refuses_an_unreadable_htpasswd_in_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "htpasswd"
    config = tmp_path / "c.toml"
    config.write_text(
        f'[blob_store.fs]\nroot_dir = "{tmp_path / "d"}"\n[auth.htpasswd]\npath = "{missing}"\n'
    )
    proc = subprocess.run(
        [*ANGOS, "serve", "-c", str(config), "--bind", "127.0.0.1", "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert proc.returncode == 2, proc.stderr
    (line,) = [line for line in proc.stderr.splitlines() if "config error" in line]
    assert line.startswith(f"angos: config error: auth.htpasswd.path: cannot read {missing}")
    assert "htpasswd -B -c" in line

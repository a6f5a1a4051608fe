"""``[auth.htpasswd]``: Distribution's file format, refusals, and reloading without a restart."""

# The tests edit a small file between calls (the subject); blocking the loop is fine here.
# ruff: noqa: ASYNC240

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from angos_auth_basic.htpasswd import (
    HtpasswdAuthenticator,
    HtpasswdConfig,
    HtpasswdError,
    parse_htpasswd,
)
from angos_auth_basic.testing import CountingVerify, cheap_argon2, cheap_bcrypt
from angos_auth_basic.verifier import PasswordVerifier

from angos_core.errors import AuthenticationFailed, ConfigError
from angos_core.identity import Credentials, Identity


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def basic(username: str, password: str) -> Credentials:
    return Credentials(client_ip="192.0.2.1", basic=(username, password))


def write(path: Path, *lines: str) -> None:
    path.write_text("".join(f"{line}\n" for line in lines))


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def verify() -> CountingVerify:
    return CountingVerify()


@pytest.fixture
def htpasswd(tmp_path: Path) -> Path:
    path = tmp_path / "htpasswd"
    write(path, f"alice:{cheap_bcrypt('alice-pw')}", f"bob:{cheap_bcrypt('bob-pw')}")
    return path


@pytest.fixture
async def auth(
    htpasswd: Path, clock: Clock, verify: CountingVerify
) -> AsyncIterator[HtpasswdAuthenticator]:
    authenticator = HtpasswdAuthenticator(
        HtpasswdConfig(htpasswd), verifier=PasswordVerifier(verify), clock=clock
    )
    await authenticator.open()
    yield authenticator
    await authenticator.aclose()


def test_format_is_distributions() -> None:
    hashes = {name: cheap_bcrypt(name) for name in ("alice", "bob", "carol")}
    text = (
        "# managed by htpasswd -B\n"
        f"alice:{hashes['alice']}\n"
        "\n"
        f"  bob:{hashes['bob']}  \r\n"  # surrounding blanks and CRLF, as Distribution trims
        "   # an indented comment\n"
        f"carol:{hashes['carol'].replace('$2b$', '$2y$', 1)}"  # no final newline
    )
    users = parse_htpasswd(text)
    assert sorted(users) == ["alice", "bob", "carol"]
    assert users["bob"].password_hash == hashes["bob"]
    assert "$2" not in repr(users["alice"])


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("bob:$apr1$r31.....$HqJZimcKQFAMYayBlzkrA/", "Apache MD5 ($apr1$)"),
        ("bob:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=", "SHA-1 ({SHA})"),
        ("bob:$6$rounds=5000$salt$hash", "SHA-512-crypt"),
        ("bob:$5$salt$hash", "SHA-256-crypt"),
        ("bob:rqXexS6ZhobKA", "crypt(3) or plaintext"),
        ("bob:s3cret-plain", "crypt(3) or plaintext"),
        ("bob:", "an empty password"),
        (f"bob:{cheap_argon2('x')}", "an Argon2 hash"),
        ("bob:$2y$05$tooshort", "not a well-formed bcrypt hash"),
    ],
    # Not the values: some hold a random salt, and xdist needs the same ids on every worker.
    ids=[
        "apr1",
        "sha1",
        "sha512-crypt",
        "sha256-crypt",
        "crypt3",
        "plain",
        "empty",
        "argon2",
        "bcrypt-cut",
    ],
)
def test_other_schemes_are_refused_with_the_fix(line: str, expected: str) -> None:
    with pytest.raises(HtpasswdError) as raised:
        parse_htpasswd(f"alice:{cheap_bcrypt('a')}\n{line}\n")
    message = str(raised.value)
    assert message.startswith("line 2 (user 'bob'): ")
    assert expected in message
    assert "only bcrypt" in message or "bcrypt hash" in message
    assert "htpasswd -B <file> bob" in message
    secret = line.partition(":")[2]
    assert not secret or secret not in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("no colon here\n", "line 1: expected user:hash"),
        (f":{cheap_bcrypt('a')}\n", "line 1: the username cannot be empty"),
        (f"a:{cheap_bcrypt('a')}\na:{cheap_bcrypt('b')}\n", "line 2 (user 'a'): the user is "),
    ],
    ids=["no-colon", "no-user", "user-twice"],
)
def test_malformed_lines(text: str, expected: str) -> None:
    with pytest.raises(HtpasswdError, match="^" + expected.replace("(", r"\(").replace(")", r"\)")):
        parse_htpasswd(text)


async def test_users_of_the_file(auth: HtpasswdAuthenticator) -> None:
    assert await auth.authenticate(basic("alice", "alice-pw")) == Identity(
        id="alice", username="alice", provider="htpasswd", method="basic"
    )
    with pytest.raises(AuthenticationFailed):
        await auth.authenticate(basic("alice", "bob-pw"))
    assert await auth.authenticate(basic("carol", "x")) is None


async def test_unreadable_at_startup_is_a_config_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    authenticator = HtpasswdAuthenticator(HtpasswdConfig(missing))
    with pytest.raises(ConfigError) as raised:
        await authenticator.open()
    assert raised.value.key == "auth.htpasswd.path"
    assert str(missing) in raised.value.message
    assert "htpasswd -B -c" in raised.value.message


async def test_invalid_at_startup_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "htpasswd"
    write(path, "alice:$apr1$r31.....$HqJZimcKQFAMYayBlzkrA/")
    with pytest.raises(ConfigError) as raised:
        await HtpasswdAuthenticator(HtpasswdConfig(path)).open()
    assert raised.value.key == "auth.htpasswd.path"
    assert "line 1 (user 'alice')" in raised.value.message
    assert "HqJZ" not in raised.value.message
    path.write_bytes(b"alice:\xff\xfe\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        await HtpasswdAuthenticator(HtpasswdConfig(path)).open()


async def test_a_new_user_applies_after_the_interval(
    auth: HtpasswdAuthenticator, htpasswd: Path, clock: Clock
) -> None:
    with htpasswd.open("a") as f:
        f.write(f"carol:{cheap_bcrypt('carol-pw')}\n")
    clock.now += 0.5
    assert await auth.authenticate(basic("carol", "carol-pw")) is None  # not looked at yet
    clock.now += 0.6
    identity = await auth.authenticate(basic("carol", "carol-pw"))
    assert identity is not None and identity.username == "carol"


async def test_a_changed_password_is_not_served_from_the_cache(
    auth: HtpasswdAuthenticator, htpasswd: Path, clock: Clock, verify: CountingVerify
) -> None:
    assert await auth.authenticate(basic("alice", "alice-pw")) is not None
    assert await auth.authenticate(basic("bob", "bob-pw")) is not None
    assert verify.count == 2
    write(htpasswd, f"alice:{cheap_bcrypt('new-pw')}", f"bob:{cheap_bcrypt('bob-pw')}")
    clock.now += 1.1
    with pytest.raises(AuthenticationFailed):
        await auth.authenticate(basic("alice", "alice-pw"))
    assert await auth.authenticate(basic("alice", "new-pw")) is not None
    assert verify.count == 4
    # bob's line did not change: still remembered.
    assert await auth.authenticate(basic("bob", "bob-pw")) is not None
    assert verify.count == 4


async def test_unchanged_users_stay_remembered(
    auth: HtpasswdAuthenticator, htpasswd: Path, clock: Clock, verify: CountingVerify
) -> None:
    assert await auth.authenticate(basic("bob", "bob-pw")) is not None
    with htpasswd.open("a") as f:
        f.write(f"carol:{cheap_bcrypt('carol-pw')}\n")
    clock.now += 1.1
    assert await auth.authenticate(basic("carol", "carol-pw")) is not None
    assert await auth.authenticate(basic("bob", "bob-pw")) is not None
    assert verify.count == 2


async def test_a_removed_user_is_gone_and_forgotten(
    auth: HtpasswdAuthenticator, htpasswd: Path, clock: Clock
) -> None:
    assert await auth.authenticate(basic("alice", "alice-pw")) is not None
    assert len(auth.verifier.cache) == 1
    write(htpasswd, f"bob:{cheap_bcrypt('bob-pw')}")
    clock.now += 1.1
    assert await auth.authenticate(basic("alice", "alice-pw")) is None
    assert len(auth.verifier.cache) == 0


async def test_a_replaced_file_is_seen(
    auth: HtpasswdAuthenticator, htpasswd: Path, clock: Clock
) -> None:
    """``mv new htpasswd``: a new inode, even with the same size and modification time."""
    before = os.stat(htpasswd)
    new = htpasswd.with_name("htpasswd.new")
    write(new, f"alice:{cheap_bcrypt('alice-p2')}", f"bob:{cheap_bcrypt('bob-pw')}")
    os.utime(new, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert os.stat(new).st_size == before.st_size
    os.replace(new, htpasswd)
    clock.now += 1.1
    assert await auth.authenticate(basic("alice", "alice-p2")) is not None


async def test_unreadable_later_keeps_the_last_good_content_and_warns_once(
    auth: HtpasswdAuthenticator,
    htpasswd: Path,
    clock: Clock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="angos.auth.htpasswd")
    good = htpasswd.read_text()
    htpasswd.unlink()
    for _ in range(3):
        clock.now += 1.1
        assert await auth.authenticate(basic("alice", "alice-pw")) is not None
    write(htpasswd, "alice:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=")  # back, but invalid
    for _ in range(2):
        clock.now += 1.1
        assert await auth.authenticate(basic("alice", "alice-pw")) is not None
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert "still serving its last good content (2 users)" in warnings[0].getMessage()

    htpasswd.write_text(good + f"carol:{cheap_bcrypt('carol-pw')}\n")
    clock.now += 1.1
    assert await auth.authenticate(basic("carol", "carol-pw")) is not None
    assert any("reloaded: 3 users" in r.getMessage() for r in caplog.records)
    # Good again: the next problem warns again.
    htpasswd.unlink()
    clock.now += 1.1
    await auth.authenticate(basic("carol", "carol-pw"))
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 2
    for record in caplog.records:
        assert "$2b$" not in record.getMessage() and "-pw" not in record.getMessage()

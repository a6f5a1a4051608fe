"""``[auth.identity.<name>]``: the result rule, the credential cache, the dummy check of an
unknown username, config errors."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator

import pytest
from angos_auth_basic.identities import IdentityAuthenticator, IdentityConfig
from angos_auth_basic.testing import CountingVerify, cheap_argon2, cheap_bcrypt
from angos_auth_basic.verifier import CredentialCache, PasswordVerifier

from angos_core.config import parse_table
from angos_core.errors import AuthenticationFailed, ConfigError
from angos_core.identity import ORDER_BASIC, Credentials, Identity


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def basic(username: str, password: str) -> Credentials:
    return Credentials(client_ip="192.0.2.1", basic=(username, password))


@pytest.fixture
def verify() -> CountingVerify:
    return CountingVerify()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def auth(verify: CountingVerify, clock: Clock) -> AsyncIterator[IdentityAuthenticator]:
    authenticator = IdentityAuthenticator(
        {
            "alice": IdentityConfig("alice", cheap_argon2("alice-pw")),
            "bob": IdentityConfig("bob", cheap_bcrypt("bob-pw")),
        },
        verifier=PasswordVerifier(verify, CredentialCache(ttl_secs=60, clock=clock)),
    )
    await authenticator.open()
    yield authenticator
    await authenticator.aclose()


async def test_identity_of_a_good_password(auth: IdentityAuthenticator) -> None:
    assert auth.name == "identity" and auth.order == ORDER_BASIC
    for username in ("alice", "bob"):
        identity = await auth.authenticate(basic(username, f"{username}-pw"))
        assert identity == Identity(
            id=username, username=username, provider="identity", method="basic"
        )


async def test_wrong_password_is_refused_without_the_password(auth: IdentityAuthenticator) -> None:
    with pytest.raises(AuthenticationFailed) as failed:
        await auth.authenticate(basic("alice", "bob-pw"))
    assert failed.value.authenticator == "identity"
    assert "bob-pw" not in str(failed.value) and "alice" not in failed.value.message


async def test_not_its_kind_is_none(auth: IdentityAuthenticator, verify: CountingVerify) -> None:
    assert await auth.authenticate(Credentials(client_ip="192.0.2.1")) is None
    assert await auth.authenticate(Credentials(client_ip="192.0.2.1", bearer="a.b.c")) is None
    assert verify.count == 0


async def test_second_request_is_not_verified_again(
    auth: IdentityAuthenticator, verify: CountingVerify
) -> None:
    for _ in range(5):
        assert await auth.authenticate(basic("alice", "alice-pw")) is not None
    assert verify.count == 1
    assert await auth.authenticate(basic("bob", "bob-pw")) is not None
    assert verify.count == 2


async def test_wrong_password_after_a_good_one_is_refused(
    auth: IdentityAuthenticator, verify: CountingVerify
) -> None:
    assert await auth.authenticate(basic("alice", "alice-pw")) is not None
    for wrong in ("alice-pw ", "alice-p", "", "ALICE-PW"):
        with pytest.raises(AuthenticationFailed):
            await auth.authenticate(basic("alice", wrong))
    # Each wrong password was verified (never answered from the cache), and none of them
    # made the good one forgotten.
    assert verify.count == 5
    assert await auth.authenticate(basic("alice", "alice-pw")) is not None
    assert verify.count == 5


async def test_wrong_password_is_never_remembered(
    auth: IdentityAuthenticator, verify: CountingVerify
) -> None:
    for _ in range(3):
        with pytest.raises(AuthenticationFailed):
            await auth.authenticate(basic("alice", "guess"))
    assert verify.count == 3
    assert len(auth.verifier.cache) == 0


async def test_remembered_for_the_ttl_only(
    auth: IdentityAuthenticator, verify: CountingVerify, clock: Clock
) -> None:
    assert await auth.authenticate(basic("alice", "alice-pw")) is not None
    clock.now += 59
    assert await auth.authenticate(basic("alice", "alice-pw")) is not None
    assert verify.count == 1
    clock.now += 2
    assert await auth.authenticate(basic("alice", "alice-pw")) is not None
    assert verify.count == 2


async def test_unknown_user_is_verified_against_the_dummy(
    auth: IdentityAuthenticator, verify: CountingVerify
) -> None:
    """An unknown username costs a verification as a wrong password does (against a hash of
    the cost most users have), then is left to the next authenticator."""
    table = await auth._current_table()
    assert await auth.authenticate(basic("mallory", "alice-pw")) is None
    assert await auth.authenticate(basic("mallory", "alice-pw")) is None
    assert [(h, p) for h, p, _ in verify.calls] == [(table.dummy, "alice-pw")] * 2
    assert table.dummy not in {u.password_hash for u in table.users.values()}
    assert len(auth.verifier.cache) == 0


async def test_verification_runs_off_the_event_loop(
    auth: IdentityAuthenticator, verify: CountingVerify
) -> None:
    assert await auth.authenticate(basic("alice", "alice-pw")) is not None
    with pytest.raises(AuthenticationFailed):
        await auth.authenticate(basic("bob", "x"))
    await auth.authenticate(basic("nobody", "x"))
    loop_thread = threading.current_thread().name
    assert [thread for _, _, thread in verify.calls] != [loop_thread] * 3
    assert all(thread.startswith("angos-auth-basic") for _, _, thread in verify.calls)


async def test_parallel_first_requests_share_one_verification(
    auth: IdentityAuthenticator, verify: CountingVerify
) -> None:
    results = await asyncio.gather(*(auth.authenticate(basic("bob", "bob-pw")) for _ in range(8)))
    assert all(r is not None and r.username == "bob" for r in results)
    assert verify.count == 1


async def test_a_waiter_going_away_does_not_cancel_the_others(
    auth: IdentityAuthenticator, verify: CountingVerify
) -> None:
    first = asyncio.ensure_future(auth.authenticate(basic("bob", "bob-pw")))
    second = asyncio.ensure_future(auth.authenticate(basic("bob", "bob-pw")))
    await asyncio.sleep(0)
    first.cancel()
    identity = await second
    assert identity is not None and identity.username == "bob"
    assert verify.count == 1


async def test_the_cache_holds_no_password(auth: IdentityAuthenticator) -> None:
    assert await auth.authenticate(basic("alice", "alice-pw")) is not None
    cache = auth.verifier.cache
    (entry,) = cache._entries.values()
    assert b"alice-pw" not in entry.digest and len(entry.digest) == 32
    assert "alice-pw" not in repr(entry)
    # Keyed under a random per-process key: another cache derives another digest.
    assert CredentialCache().digest("alice", "alice-pw") != cache.digest("alice", "alice-pw")
    assert cache.digest("ab", "c") != cache.digest("a", "bc")


def test_cache_is_bounded_lru() -> None:
    from angos_auth_basic.verifier import User

    cache = CredentialCache(max_entries=2)
    users = [User(name, "h") for name in ("a", "b", "c")]
    for user in users[:2]:
        cache.remember(user, cache.digest(user.username, "pw"))
    assert cache.hit(users[0], cache.digest("a", "pw"))  # a is now the most recent
    cache.remember(users[2], cache.digest("c", "pw"))
    assert len(cache) == 2
    assert not cache.hit(users[1], cache.digest("b", "pw"))
    assert cache.hit(users[0], cache.digest("a", "pw"))
    assert cache.hit(users[2], cache.digest("c", "pw"))


def test_config_repr_hides_the_hash() -> None:
    encoded = cheap_argon2("alice-pw")
    assert encoded not in repr(IdentityConfig("alice", encoded))


def test_plaintext_password_is_a_config_error_naming_the_key() -> None:
    with pytest.raises(ConfigError) as raised:
        parse_table(
            IdentityConfig, {"username": "alice", "password": "hunter2"}, "auth.identity.alice"
        )
    (error,) = raised.value.errors
    assert error.key == "auth.identity.alice.password"
    assert "angos hash-password" in error.message
    assert "hunter2" not in str(error)


def test_every_bad_key_is_reported() -> None:
    with pytest.raises(ConfigError) as raised:
        parse_table(
            IdentityConfig,
            {"username": "al:ice", "password": "$argon2id$v=19$broken"},
            "auth.identity.alice",
        )
    assert {e.key for e in raised.value.errors} == {
        "auth.identity.alice.username",
        "auth.identity.alice.password",
    }
    with pytest.raises(ConfigError) as raised:
        parse_table(IdentityConfig, {"username": "alice"}, "auth.identity.alice")
    assert raised.value.key == "auth.identity.alice.password"


def test_two_entries_with_one_username() -> None:
    with pytest.raises(ConfigError) as raised:
        IdentityAuthenticator(
            {
                "alice": IdentityConfig("alice", cheap_argon2("a")),
                "alice2": IdentityConfig("alice", cheap_argon2("b")),
            }
        )
    assert raised.value.key == "auth.identity.alice2.username"
    assert "[auth.identity.alice]" in raised.value.message

"""Password hashes: what is accepted, what is refused and why, making and checking them."""

from __future__ import annotations

import base64

import argon2.low_level
import pytest
from angos_auth_basic.hashing import (
    BCRYPT_MAX_PASSWORD_BYTES,
    Cost,
    cost_of,
    dummy_hash,
    hash_password,
    hash_problem,
    main_cost,
    verify_password,
)
from angos_auth_basic.testing import CHEAP_ARGON2, CHEAP_BCRYPT, cheap_argon2, cheap_bcrypt


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode().rstrip("=")


def _phc(raw: bytes, salt: bytes) -> str:
    return f"$argon2id$v=19$m=1024,t=2,p=1${_b64(salt)}${_b64(raw)}"


# A PHC string put together by hand from the raw Argon2id output, not by PasswordHasher: the
# format is parsed, not only round-tripped. Of "s3cret" with the salt "somesaltsalt".
ARGON2_BY_HAND = _phc(
    argon2.low_level.hash_secret_raw(
        b"s3cret", b"somesaltsalt", time_cost=2, memory_cost=1024, parallelism=1, hash_len=32,
        type=argon2.low_level.Type.ID,
    ),
    b"somesaltsalt",
)  # fmt: skip
# htpasswd -B writes $2y$ (Apache), older tools $2a$: the same algorithm as $2b$.
BCRYPT_2Y = hash_password("s3cret", cost=Cost("bcrypt", (5,))).replace("$2b$", "$2y$", 1)


def test_argon2id_default_is_rfc9106_low_memory() -> None:
    encoded = hash_password("s3cret")
    assert encoded.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    assert hash_problem(encoded) is None
    assert verify_password(encoded, "s3cret")
    assert not verify_password(encoded, "s3cret ")
    assert hash_password("s3cret") != encoded  # a fresh salt each time


def test_bcrypt_is_2b_at_cost_12() -> None:
    encoded = hash_password("s3cret", scheme="bcrypt")
    assert encoded.startswith("$2b$12$")
    assert hash_problem(encoded) is None
    assert verify_password(encoded, "s3cret")
    assert not verify_password(encoded, "S3cret")


def test_other_prefixes_and_hand_made_phc_verify() -> None:
    for encoded in (BCRYPT_2Y, BCRYPT_2Y.replace("$2y$", "$2a$", 1), ARGON2_BY_HAND):
        assert hash_problem(encoded) is None, encoded
        assert verify_password(encoded, "s3cret"), encoded
        assert not verify_password(encoded, "wrong"), encoded


def test_non_ascii_passwords() -> None:
    for make in (cheap_argon2, cheap_bcrypt):
        encoded = make("pässwörd-密码")
        assert verify_password(encoded, "pässwörd-密码")
        assert not verify_password(encoded, "passwort")
        # A lone surrogate (a header decoded with surrogateescape) fails, never raises.
        assert not verify_password(encoded, "\udcff")


def test_bcrypt_refuses_what_it_would_truncate() -> None:
    long = "x" * (BCRYPT_MAX_PASSWORD_BYTES + 1)
    encoded = hash_password(long[:BCRYPT_MAX_PASSWORD_BYTES], cost=CHEAP_BCRYPT)
    assert verify_password(encoded, long[:BCRYPT_MAX_PASSWORD_BYTES])
    # The first 72 bytes match, yet a longer password is not this one.
    assert not verify_password(encoded, long)
    with pytest.raises(ValueError, match="72 bytes"):
        hash_password(long, scheme="bcrypt")
    # Argon2id reads all of it.
    assert verify_password(cheap_argon2(long), long)
    assert not verify_password(cheap_argon2(long), long[:-1])


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("hunter2", "a plaintext password?"),
        ("", "a plaintext password?"),
        ("$argon2id$v=19$m=65536,t=3,p=4$short", "not a well-formed Argon2id hash"),
        ("$argon2id$v=16$m=65536,t=3,p=4$c29tZXNhbHRzYWx0$JBaBQeTn9Hy/ew0BT1qD9DZ4", "not a well"),
        (ARGON2_BY_HAND + "!", "not a well-formed Argon2id hash"),
        ("$argon2id$v=19$m=1,t=2,p=1$c29tZXNhbHRzYWx0$JBaBQeTn9Hy/ew0BT1qD9DZ4", "parameters"),
        (ARGON2_BY_HAND.replace("argon2id", "argon2i"), "only Argon2id is accepted"),
        (ARGON2_BY_HAND.replace("argon2id", "argon2d"), "only Argon2id is accepted"),
        (BCRYPT_2Y[:-1], "not a well-formed bcrypt hash"),
        (BCRYPT_2Y.replace("$05$", "$03$"), "cost outside 4..31"),
        ("$apr1$abcdefgh$0123456789abcdefghijkl", "scheme that is not accepted"),
        ("$6$salt$hash", "scheme that is not accepted"),
    ],
    # Not the values: some hold a random salt, and xdist needs the same ids on every worker.
    ids=[
        "plaintext",
        "empty",
        "argon2-short",
        "argon2-v16",
        "argon2-trailing",
        "argon2-weak-params",
        "argon2i",
        "argon2d",
        "bcrypt-cut",
        "bcrypt-cost-3",
        "apr1",
        "sha512-crypt",
    ],
)
def test_hash_problem_names_the_fix_never_the_value(value: str, expected: str) -> None:
    problem = hash_problem(value)
    assert problem is not None
    assert expected in problem
    assert "angos hash-password" in problem
    if value:
        assert value not in problem


def test_cost_and_dummy() -> None:
    assert cost_of(cheap_argon2("a")) == CHEAP_ARGON2
    assert cost_of(cheap_bcrypt("a")) == CHEAP_BCRYPT
    assert cost_of(BCRYPT_2Y) == Cost("bcrypt", (5,))
    assert main_cost([cheap_bcrypt("a"), cheap_argon2("b"), cheap_bcrypt("c")]) == CHEAP_BCRYPT
    assert main_cost([]) is None
    dummy = dummy_hash(CHEAP_BCRYPT)
    assert cost_of(dummy) == CHEAP_BCRYPT and hash_problem(dummy) is None
    assert cost_of(dummy_hash(CHEAP_ARGON2)) == CHEAP_ARGON2
    assert cost_of(dummy_hash(None)) == Cost("argon2id", (65536, 3, 4))
    # The dummy's password is random: nothing guessable verifies against it.
    for guess in ("", "password", "dummy"):
        assert not verify_password(dummy, guess)

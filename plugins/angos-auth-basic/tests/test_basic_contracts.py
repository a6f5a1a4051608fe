"""Both authenticators pass the shipped authenticator contract."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from angos_auth_basic import (
    HtpasswdAuthenticator,
    HtpasswdConfig,
    IdentityAuthenticator,
    IdentityConfig,
)
from angos_auth_basic.testing import cheap_argon2, cheap_bcrypt

from angos_core.identity import Credentials
from angos_core.testing import AuthenticatorCase, AuthenticatorContract

GOOD = "correct horse battery"
BAD = "wrong battery staple"


def case(
    authenticator: IdentityAuthenticator | HtpasswdAuthenticator, *hashes: str
) -> AuthenticatorCase:
    return AuthenticatorCase(
        authenticator,
        good=Credentials("192.0.2.1", basic=("alice", GOOD)),
        bad=Credentials("192.0.2.1", basic=("alice", BAD)),
        foreign=Credentials("192.0.2.1", bearer="eyJhbGciOi.not-a-basic.credential"),
        identity_id="alice",
        secrets=hashes,
    )


class TestIdentityAuthenticator(AuthenticatorContract):
    @pytest.fixture
    async def authenticator_case(self) -> AsyncIterator[AuthenticatorCase]:
        hashes = (cheap_argon2(GOOD), cheap_bcrypt("bob's password"))
        authenticator = IdentityAuthenticator(
            {
                "alice": IdentityConfig("alice", hashes[0]),
                "bob": IdentityConfig("bob", hashes[1]),
            }
        )
        await authenticator.open()
        yield case(authenticator, *hashes)
        await authenticator.aclose()


class TestHtpasswdAuthenticator(AuthenticatorContract):
    @pytest.fixture
    async def authenticator_case(self, tmp_path: Path) -> AsyncIterator[AuthenticatorCase]:
        hashes = (cheap_bcrypt(GOOD), cheap_bcrypt("bob's password"))
        path = tmp_path / "htpasswd"
        path.write_text(f"alice:{hashes[0]}\nbob:{hashes[1]}\n")
        authenticator = HtpasswdAuthenticator(HtpasswdConfig(path))
        await authenticator.open()
        yield case(authenticator, *hashes)
        await authenticator.aclose()

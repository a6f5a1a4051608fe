"""The authenticator contract suite, run on the test authenticators of tests/support/auth.py,
and shown to catch the faults it is for (a leak, a wrong result)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import pytest

from angos_core.errors import AuthenticationFailed
from angos_core.identity import Credentials, Identity
from angos_core.testing import AuthenticatorCase, AuthenticatorContract
from tests.support.auth import (
    StaticAuthenticator,
    StaticTokenAuthenticator,
    StaticTokenConfig,
)

IP = "192.0.2.10"
PASSWORD = "correct-horse-battery"
TOKEN = "c3RhdGljLXRva2VuLWZvci10ZXN0cw"


class TestStaticAuthenticator(AuthenticatorContract):
    @pytest.fixture
    async def authenticator_case(self) -> AsyncIterator[AuthenticatorCase]:
        authenticator = StaticAuthenticator({"alice": PASSWORD})
        await authenticator.open()
        yield AuthenticatorCase(
            authenticator,
            good=Credentials(IP, basic=("alice", PASSWORD)),
            bad=Credentials(IP, basic=("alice", "wrong-horse-battery")),
            foreign=Credentials(IP, bearer=TOKEN),
            identity_id="alice",
        )
        await authenticator.aclose()


class TestStaticTokenAuthenticator(AuthenticatorContract):
    @pytest.fixture
    async def authenticator_case(self) -> AsyncIterator[AuthenticatorCase]:
        authenticator = StaticTokenAuthenticator(StaticTokenConfig(token=TOKEN))
        await authenticator.open()
        yield AuthenticatorCase(
            authenticator,
            good=Credentials(IP, bearer=TOKEN),
            bad=Credentials(IP, bearer="d3JvbmctdG9rZW4tZm9yLXRlc3Rz"),
            foreign=Credentials(IP, basic=("alice", PASSWORD)),
        )
        await authenticator.aclose()


# --------------------------------------------------------------------------- the suite bites


class _Leaky(StaticAuthenticator):
    """Quotes the wrong password in its error and logs the good one."""

    async def authenticate(self, credentials: Credentials) -> Identity | None:
        if credentials.basic is not None:
            logging.getLogger("leaky").info("checking %s", credentials.basic[1])
            if credentials.basic[1] != PASSWORD:
                raise AuthenticationFailed(self.name, f"wrong password {credentials.basic[1]}")
        return await super().authenticate(credentials)


class _ClaimsEverything(StaticAuthenticator):
    """Answers 'invalid' to credentials that are not its kind."""

    async def authenticate(self, credentials: Credentials) -> Identity | None:
        if credentials.basic is None:
            raise AuthenticationFailed(self.name)
        return await super().authenticate(credentials)


def _case(authenticator: StaticAuthenticator) -> AuthenticatorCase:
    return AuthenticatorCase(
        authenticator,
        good=Credentials(IP, basic=("alice", PASSWORD)),
        bad=Credentials(IP, basic=("alice", "wrong-horse-battery")),
        foreign=Credentials(IP, bearer=TOKEN),
    )


async def test_the_suite_catches_a_credential_in_an_error_message() -> None:
    case = _case(_Leaky({"alice": PASSWORD}))
    with pytest.raises(AssertionError, match="a credential appears in the exception"):
        await AuthenticatorContract().test_bad_credentials_fail(case)


async def test_the_suite_catches_a_credential_in_a_log_record(
    caplog: pytest.LogCaptureFixture,
) -> None:
    case = _case(_Leaky({"alice": PASSWORD}))
    with pytest.raises(AssertionError, match="a credential appears in log record leaky"):
        await AuthenticatorContract().test_no_credential_in_any_log_record(case, caplog)


async def test_the_suite_catches_a_foreign_credential_called_invalid() -> None:
    case = _case(_ClaimsEverything({"alice": PASSWORD}))
    with pytest.raises(AuthenticationFailed):
        await AuthenticatorContract().test_foreign_credentials_are_not_its_kind(case)
    with pytest.raises(AuthenticationFailed):
        await AuthenticatorContract().test_no_credentials_are_not_its_kind(case)


async def test_the_suite_refuses_short_secrets() -> None:
    authenticator = StaticAuthenticator({"alice": "pw"})
    case = AuthenticatorCase(
        authenticator,
        good=Credentials(IP, basic=("alice", "pw")),
        bad=Credentials(IP, basic=("alice", "px")),
        foreign=Credentials(IP, bearer=TOKEN),
    )
    with pytest.raises(AssertionError, match="at least 8 characters"):
        await AuthenticatorContract().test_case_secrets_are_long_enough(case)

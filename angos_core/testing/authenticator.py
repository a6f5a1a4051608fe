"""The contract every authenticator passes. Subclass it and override ``authenticator_case``.

The fixture yields an :class:`AuthenticatorCase`: an **opened** authenticator (closed by
the fixture after the test) and three credentials: ``good`` (valid), ``bad`` (of its kind
and invalid: a wrong password, a token signed by another key) and ``foreign`` (not of its
kind: a Bearer token for a Basic authenticator, a Basic pair for a JWT one). The suite
pins the result rule of :mod:`angos_core.identity`::

    import pytest
    from angos_core.identity import Credentials
    from angos_core.testing import AuthenticatorCase, AuthenticatorContract
    from angos_mything import MyAuthenticator, MyConfig

    class TestMyAuthenticator(AuthenticatorContract):
        @pytest.fixture
        async def authenticator_case(self):
            authenticator = MyAuthenticator({"alice": MyConfig(password_hash=HASH)})
            await authenticator.open()
            yield AuthenticatorCase(
                authenticator,
                good=Credentials("192.0.2.1", basic=("alice", "correct horse")),
                bad=Credentials("192.0.2.1", basic=("alice", "wrong battery")),
                foreign=Credentials("192.0.2.1", bearer="eyJhbGciOi.not.mine"),
            )
            await authenticator.aclose()

Every password and token of the three credentials (``secrets`` adds more: a signing key,
say) must be absent from every exception message and every log record, so give each at
least 8 characters: a short one would be found by chance.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from angos_core.errors import AuthenticationFailed
from angos_core.identity import Authenticator, Credentials, Identity

#: Shorter secrets would match log text by chance; the case must use longer ones.
MIN_SECRET_LENGTH = 8


@dataclass
class AuthenticatorCase:
    """An opened authenticator and credentials to try it with (see the module docstring).
    ``identity_id``: the ``Identity.id`` the good credentials must give, if known."""

    authenticator: Authenticator
    good: Credentials
    bad: Credentials
    foreign: Credentials
    identity_id: str | None = None
    secrets: tuple[str, ...] = ()

    def all_secrets(self) -> list[str]:
        found = list(self.secrets)
        for credentials in (self.good, self.bad, self.foreign):
            if credentials.basic is not None:
                found.append(credentials.basic[1])
            if credentials.bearer is not None:
                found.append(credentials.bearer)
        return found


def _assert_no_secret(case: AuthenticatorCase, text: str, where: str) -> None:
    for secret in case.all_secrets():
        assert secret not in text, f"a credential appears in {where}: {text!r}"


class AuthenticatorContract:
    """Behaviour every :class:`~angos_core.identity.Authenticator` must have."""

    @pytest.fixture
    async def authenticator_case(self) -> AsyncIterator[AuthenticatorCase]:
        raise NotImplementedError(
            "override the authenticator_case fixture: yield an AuthenticatorCase holding an "
            "opened authenticator"
        )
        yield  # pragma: no cover

    async def test_is_an_authenticator(self, authenticator_case: AuthenticatorCase) -> None:
        authenticator = authenticator_case.authenticator
        assert isinstance(authenticator, Authenticator)
        assert isinstance(authenticator.name, str) and authenticator.name
        assert isinstance(authenticator.order, int)
        await authenticator.health()

    async def test_case_secrets_are_long_enough(
        self, authenticator_case: AuthenticatorCase
    ) -> None:
        for secret in authenticator_case.all_secrets():
            assert len(secret) >= MIN_SECRET_LENGTH, (
                f"use credentials of at least {MIN_SECRET_LENGTH} characters in the case, so "
                "that finding one in a message means a leak"
            )
        assert authenticator_case.good.presented and authenticator_case.bad.presented
        assert authenticator_case.foreign.presented

    async def test_good_credentials_give_an_identity(
        self, authenticator_case: AuthenticatorCase
    ) -> None:
        authenticator = authenticator_case.authenticator
        identity = await authenticator.authenticate(authenticator_case.good)
        assert isinstance(identity, Identity)
        assert isinstance(identity.id, str) and identity.id
        assert isinstance(identity.method, str) and identity.method
        # The provider is the config entry: the authenticator's name, or one of its entries.
        name = authenticator.name
        assert identity.provider == name or identity.provider.startswith(f"{name}.")
        if authenticator_case.identity_id is not None:
            assert identity.id == authenticator_case.identity_id
        again = await authenticator.authenticate(authenticator_case.good)
        assert again is not None and (again.id, again.provider) == (identity.id, identity.provider)

    async def test_bad_credentials_fail(self, authenticator_case: AuthenticatorCase) -> None:
        authenticator = authenticator_case.authenticator
        with pytest.raises(AuthenticationFailed) as info:
            await authenticator.authenticate(authenticator_case.bad)
        assert info.value.authenticator
        assert info.value.message
        _assert_no_secret(authenticator_case, str(info.value), "the exception")
        _assert_no_secret(authenticator_case, info.value.message, "the exception's message")

    async def test_bad_after_good_still_fails(self, authenticator_case: AuthenticatorCase) -> None:
        """Whatever an authenticator remembers of a verified credential, a different one for
        the same caller is checked again (and the good one still passes after it)."""
        authenticator = authenticator_case.authenticator
        assert await authenticator.authenticate(authenticator_case.good) is not None
        for _ in range(2):
            with pytest.raises(AuthenticationFailed):
                await authenticator.authenticate(authenticator_case.bad)
        assert await authenticator.authenticate(authenticator_case.good) is not None

    async def test_foreign_credentials_are_not_its_kind(
        self, authenticator_case: AuthenticatorCase
    ) -> None:
        assert (
            await authenticator_case.authenticator.authenticate(authenticator_case.foreign) is None
        )

    async def test_no_credentials_are_not_its_kind(
        self, authenticator_case: AuthenticatorCase
    ) -> None:
        nothing = Credentials(client_ip=authenticator_case.good.client_ip)
        assert await authenticator_case.authenticator.authenticate(nothing) is None

    async def test_concurrent_requests(self, authenticator_case: AuthenticatorCase) -> None:
        authenticator = authenticator_case.authenticator
        results = await asyncio.gather(
            *(authenticator.authenticate(authenticator_case.good) for _ in range(10)),
            *(authenticator.authenticate(authenticator_case.bad) for _ in range(10)),
            return_exceptions=True,
        )
        assert all(isinstance(r, Identity) for r in results[:10]), results[:10]
        assert all(isinstance(r, AuthenticationFailed) for r in results[10:]), results[10:]

    async def test_no_credential_in_any_log_record(
        self, authenticator_case: AuthenticatorCase, caplog: pytest.LogCaptureFixture
    ) -> None:
        authenticator = authenticator_case.authenticator
        with caplog.at_level(logging.DEBUG):
            await authenticator.authenticate(authenticator_case.good)
            with pytest.raises(AuthenticationFailed):
                await authenticator.authenticate(authenticator_case.bad)
            await authenticator.authenticate(authenticator_case.foreign)
            await authenticator.health()
        for record in caplog.records:
            _assert_no_secret(authenticator_case, record.getMessage(), f"log record {record.name}")
            if record.exc_info:
                trace = logging.Formatter().formatException(record.exc_info)
                _assert_no_secret(authenticator_case, trace, f"log record {record.name}")

    async def test_aclose_is_idempotent(self, authenticator_case: AuthenticatorCase) -> None:
        await authenticator_case.authenticator.aclose()
        await authenticator_case.authenticator.aclose()

"""Tokens minted for an identity the chain no longer has are refused
(``check_minted_for``, angos_core.auth.directory), also from the verified-token cache."""

from __future__ import annotations

import base64

import pytest
from angos_auth_token.config import TokenServiceConfig
from angos_auth_token.service import TokenService

from angos_core.errors import AuthenticationFailed
from angos_core.identity import Access, Credentials, Identity

SECRET = base64.b64encode(bytes(range(32))).decode()
PULL = (Access("repository", "team/app", frozenset({"pull"})),)


def alice(provider: str = "identity") -> Identity:
    return Identity(id="alice", username="alice", provider=provider, method="basic")


def bearer(token: str) -> Credentials:
    return Credentials(client_ip="127.0.0.1", bearer=token)


async def test_a_token_whose_identity_went_is_refused_even_when_cached() -> None:
    service = TokenService(TokenServiceConfig(secret_key=SECRET))
    present = {("identity", "alice")}
    service.check_minted_for(lambda provider, id_: (provider, id_) in present)
    token = service.issue(alice(), PULL).token
    accepted = await service.authenticate(bearer(token))
    assert accepted is not None and accepted.id == "alice"
    present.clear()  # the user is removed
    with pytest.raises(AuthenticationFailed, match="no longer configured"):
        await service.authenticate(bearer(token))  # the cached verification is not enough


async def test_a_refresh_token_whose_provider_went_is_refused() -> None:
    service = TokenService(TokenServiceConfig(secret_key=SECRET))
    providers = {"oidc.github"}
    service.check_minted_for(lambda provider, id_: provider in providers)
    issued = service.issue(alice("oidc.github"), PULL, refresh=True)
    assert issued.refresh_token is not None
    assert service.redeem(issued.refresh_token).id == "alice"
    providers.clear()
    with pytest.raises(AuthenticationFailed, match="no longer configured"):
        service.redeem(issued.refresh_token)

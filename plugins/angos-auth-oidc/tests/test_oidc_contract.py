"""The oidc authenticator passes the shipped authenticator contract."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from angos_auth_oidc import OidcAuthenticator, OidcConfig

from angos_core.identity import Credentials
from angos_core.testing import AuthenticatorCase, AuthenticatorContract
from angos_core.testing.oidc_issuer import OidcIssuer


class TestOidcAuthenticator(AuthenticatorContract):
    @pytest.fixture
    async def authenticator_case(self, oidc_issuer: OidcIssuer) -> AsyncIterator[AuthenticatorCase]:
        authenticator = OidcAuthenticator(
            {"ci": OidcConfig(issuer=oidc_issuer.issuer, required_audience="angos")}
        )
        await authenticator.open()
        good = oidc_issuer.token(sub="repo:org/app:ref:refs/heads/main")
        # Of its kind (this issuer) and invalid: the same claims under another key's signature.
        forger = OidcIssuer()
        forged = forger.token(iss=oidc_issuer.issuer, headers={"kid": oidc_issuer.kid()})
        yield AuthenticatorCase(
            authenticator,
            good=Credentials("192.0.2.1", bearer=good),
            bad=Credentials("192.0.2.1", bearer=forged),
            foreign=Credentials("192.0.2.1", basic=("alice", "correct horse battery")),
            identity_id="repo:org/app:ref:refs/heads/main",
        )
        await authenticator.aclose()


class TestOidcAuthenticatorAsDockerLoginPassword(AuthenticatorContract):
    """The same, with the token as the Basic password of the entry's name."""

    @pytest.fixture
    async def authenticator_case(self, oidc_issuer: OidcIssuer) -> AsyncIterator[AuthenticatorCase]:
        authenticator = OidcAuthenticator(
            {"github-actions": OidcConfig(issuer=oidc_issuer.issuer, required_audience="angos")}
        )
        await authenticator.open()
        expired = oidc_issuer.token(iat=1_000_000_000, nbf=None, exp=1_000_000_300)
        yield AuthenticatorCase(
            authenticator,
            good=Credentials("192.0.2.1", basic=("github-actions", oidc_issuer.token(sub="gha"))),
            bad=Credentials("192.0.2.1", basic=("github-actions", expired)),
            foreign=Credentials("192.0.2.1", bearer="opaque-registry-token-1234"),
            identity_id="gha",
        )
        await authenticator.aclose()

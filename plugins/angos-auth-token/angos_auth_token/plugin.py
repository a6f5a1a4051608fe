"""The ``angos-auth-token`` entry point: authenticators ``token_service`` and ``token``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from angos_auth_token.config import ExternalTokenConfig, TokenServiceConfig
from angos_core import hookimpl
from angos_core.hookspecs import AuthenticatorSpec

if TYPE_CHECKING:
    from angos_auth_token.external import ExternalTokens
    from angos_auth_token.service import TokenService

DISTRIBUTION = "angos-auth-token"


# The factories import their modules when the config names them (PyJWT, cryptography).
def _service(config: TokenServiceConfig) -> TokenService:
    from angos_auth_token.service import TokenService

    return TokenService(config)


def _external(entries: Mapping[str, ExternalTokenConfig]) -> ExternalTokens:
    from angos_auth_token.external import ExternalTokens

    return ExternalTokens(entries)


@hookimpl
def angos_authenticators() -> list[AuthenticatorSpec]:
    return [
        AuthenticatorSpec(
            name="token_service",
            factory=_service,
            config_type=TokenServiceConfig,
            distribution=DISTRIBUTION,
            description="the registry's own token service: GET/POST /token, Bearer tokens",
            form="table",
        ),
        AuthenticatorSpec(
            name="token",
            factory=_external,
            config_type=ExternalTokenConfig,
            distribution=DISTRIBUTION,
            description="tokens of trusted external token servers (Distribution's auth.token)",
            form="entries",
        ),
    ]

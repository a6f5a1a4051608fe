"""The ``angos-auth-token`` entry point: authenticators ``token_service`` and ``token``."""

from __future__ import annotations

from collections.abc import Mapping

from angos_auth_token.external import ExternalTokenConfig, ExternalTokens
from angos_auth_token.service import TokenService, TokenServiceConfig
from angos_core import hookimpl
from angos_core.hookspecs import AuthenticatorSpec

DISTRIBUTION = "angos-auth-token"


def _external(entries: Mapping[str, ExternalTokenConfig]) -> ExternalTokens:
    return ExternalTokens(entries)


@hookimpl
def angos_authenticators() -> list[AuthenticatorSpec]:
    return [
        AuthenticatorSpec(
            name="token_service",
            factory=TokenService,
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

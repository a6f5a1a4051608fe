"""The ``angos`` entry point of the distribution angos-auth-oidc."""

from __future__ import annotations

from collections.abc import Mapping

from angos_auth_oidc.config import OidcConfig
from angos_core import hookimpl
from angos_core.hookspecs import AuthenticatorSpec, BackendSpec
from angos_core.identity import Authenticator

DISTRIBUTION = "angos-auth-oidc"

# The authenticator (PyJWT, cryptography, an HTTP client) is imported when a config selects
# it, not in every process that merely has this plugin installed.


def _authenticator(entries: Mapping[str, OidcConfig]) -> Authenticator:
    from angos_auth_oidc.authenticator import OidcAuthenticator

    return OidcAuthenticator(entries)


@hookimpl
def angos_authenticators() -> list[BackendSpec[Authenticator]]:
    return [
        AuthenticatorSpec(
            name="oidc",
            factory=_authenticator,
            config_type=OidcConfig,
            form="entries",
            distribution=DISTRIBUTION,
            description="JWTs of trusted OIDC issuers (GitHub Actions, GitLab, Kubernetes)",
        )
    ]

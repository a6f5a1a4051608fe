"""The ``angos-auth-basic`` entry point: authenticators ``identity`` and ``htpasswd``."""

from __future__ import annotations

from angos_auth_basic.htpasswd import HtpasswdAuthenticator, HtpasswdConfig
from angos_auth_basic.identities import IdentityAuthenticator, IdentityConfig
from angos_core import hookimpl
from angos_core.hookspecs import AuthenticatorSpec, BackendSpec
from angos_core.identity import Authenticator

DISTRIBUTION = "angos-auth-basic"


@hookimpl
def angos_authenticators() -> list[BackendSpec[Authenticator]]:
    return [
        AuthenticatorSpec(
            name="identity",
            factory=IdentityAuthenticator,
            config_type=IdentityConfig,
            distribution=DISTRIBUTION,
            description="users with Argon2id or bcrypt password hashes, in the config "
            "([auth.identity.<name>] username, password)",
            form="entries",
        ),
        AuthenticatorSpec(
            name="htpasswd",
            factory=HtpasswdAuthenticator,
            config_type=HtpasswdConfig,
            distribution=DISTRIBUTION,
            description="users of a Distribution htpasswd file (bcrypt), reloaded on change",
        ),
    ]

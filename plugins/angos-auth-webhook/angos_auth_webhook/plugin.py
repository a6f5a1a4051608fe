"""The ``angos`` entry point of the distribution angos-auth-webhook."""

from __future__ import annotations

from collections.abc import Mapping

from angos_auth_webhook.config import WebhookConfig
from angos_core import hookimpl
from angos_core.authorization import Authorizer
from angos_core.hookspecs import AuthorizerSpec, BackendSpec

DISTRIBUTION = "angos-auth-webhook"


def _authorizer(entries: Mapping[str, WebhookConfig]) -> Authorizer:
    from angos_auth_webhook.authorizer import WebhookAuthorizer

    return WebhookAuthorizer(entries)


@hookimpl
def angos_authorizers() -> list[BackendSpec[Authorizer]]:
    return [
        AuthorizerSpec(
            name="webhook",
            factory=_authorizer,
            config_type=WebhookConfig,
            form="entries",
            distribution=DISTRIBUTION,
            description="an external HTTP service decides, after the access policies",
        )
    ]

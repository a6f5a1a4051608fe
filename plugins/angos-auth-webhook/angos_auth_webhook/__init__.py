"""Angos plugin ``angos-auth-webhook``: authorizer ``webhook`` (``[auth.webhook.<entry>]``).

Each entry is an HTTP service asked about every request the access policies allowed, as
Angos in Rust's authorization webhooks are (see :mod:`angos_auth_webhook.authorizer`).
"""

from __future__ import annotations

from angos_auth_webhook.config import BasicAuth, WebhookConfig

__all__ = ["BasicAuth", "WebhookConfig"]

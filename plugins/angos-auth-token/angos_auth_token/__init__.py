"""Angos token authentication: the registry's token service (authenticator
``token_service``) and trusted external token servers (authenticator ``token``)."""

from angos_auth_token.external import ExternalTokenConfig, ExternalTokens
from angos_auth_token.service import TokenService, TokenServiceConfig

__all__ = ["ExternalTokenConfig", "ExternalTokens", "TokenService", "TokenServiceConfig"]

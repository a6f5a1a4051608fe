"""The HTTP API: aiohttp app factory, routes, handlers, OCI error responses."""

from angos_core.http.app import config_from_toml, make_app, make_app_from_toml

__all__ = ["config_from_toml", "make_app", "make_app_from_toml"]

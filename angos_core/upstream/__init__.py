"""Clients of the registries a pull-through namespace caches (``[[repository."<ns>".upstream]]``).

This package only talks to upstreams: authentication (Basic and the Docker token flow,
:mod:`angos_core.upstream.auth`), bounded retries of 429, and the few requests a cache
makes (:mod:`angos_core.upstream.client`). What to fetch and what to store is the registry
layer's (:mod:`angos_core.registry.pull_through`).
"""

from angos_core.upstream.client import (
    UpstreamBlob,
    UpstreamClient,
    UpstreamManifest,
    UpstreamNotFound,
    Upstreams,
)

__all__ = ["UpstreamBlob", "UpstreamClient", "UpstreamManifest", "UpstreamNotFound", "Upstreams"]

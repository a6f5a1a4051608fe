"""Every hook a plugin can implement. All start with ``angos_``.

Hooks are synchronous startup factories: they only *describe* backends. All I/O happens in
the async methods of the objects a :class:`BackendSpec` factory returns (pluggy cannot await).

Result rule for the ``angos_*`` collection hooks: every plugin's list is collected and
concatenated (pluggy's default collect-all); core refuses two specs with the same name for
one kind, and selects the one the config names (for authenticators: every one the config
names, run as one chain; for authorizers: every one the config names, all must allow).

Each hook here is one kind's, named by its declaration in :mod:`angos_core.kinds` (config
section, protocol, wrapper, health); a hook needs both.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

import pluggy

from angos_core.authorization import Authorizer
from angos_core.identity import Authenticator
from angos_core.protocols import BlobStore, Cache, LockProvider, MetadataStore

PROJECT = "angos"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

T = TypeVar("T")

#: Capability names a spec may declare.
CAP_PRESIGNED_URLS = "presigned_urls"
CAP_LOCAL_FILES = "local_files"
CAP_ATOMIC_CREATE = "atomic_create"
CAP_SHARED = "shared"  # safe for several processes or replicas (with a shared lock provider)
#: A blob store that also implements :class:`~angos_core.protocols.BlobPut`.
CAP_DIRECT_PUT = "direct_put"


@dataclass(frozen=True)
class BackendSpec(Generic[T]):
    """How to build one named backend.

    ``config_type`` is a dataclass; core parses the backend's TOML table into it (unknown
    keys and wrong types are errors naming the key) and passes the instance to ``factory``.
    """

    name: str
    factory: Callable[[Any], T]
    config_type: type[Any]
    capabilities: frozenset[str] = field(default_factory=frozenset)
    distribution: str = ""
    description: str = ""


@dataclass(frozen=True)
class AuthenticatorSpec(BackendSpec[Authenticator]):
    """How to build one authenticator, and which config form it takes.

    ``form = "table"``: one table ``[auth.<name>]`` (``[auth.htpasswd]``); ``factory``
    gets its parsed ``config_type``. ``form = "entries"``: any number of named tables
    ``[auth.<name>.<entry>]`` (``[auth.identity.alice]``, ``[auth.oidc.github]``), each
    parsed into ``config_type``; ``factory`` gets them all at once, as a ``dict`` of entry
    name to parsed settings in file order, and returns one authenticator serving every
    entry (it names the entry that accepted a caller in ``Identity.provider``).
    A plain :class:`BackendSpec` returned by ``angos_authenticators`` is ``form = "table"``.
    """

    form: Literal["table", "entries"] = "table"


@dataclass(frozen=True)
class AuthorizerSpec(BackendSpec[Authorizer]):
    """How to build one authorizer, in either form :class:`AuthenticatorSpec` describes
    (``[auth.<name>]``, or every ``[auth.<name>.<entry>]`` at once: ``[auth.webhook.audit]``)."""

    form: Literal["table", "entries"] = "table"


@hookspec
def angos_blob_stores() -> list[BackendSpec[BlobStore]]:  # type: ignore[empty-body]
    """Blob stores this plugin provides, selected by ``[blob_store.<name>]``.

    Result: all lists are concatenated; names must be unique across plugins.
    """


@hookspec
def angos_metadata_stores() -> list[BackendSpec[MetadataStore]]:  # type: ignore[empty-body]
    """Metadata stores this plugin provides, selected by ``[metadata_store.<name>]``.

    Result: all lists are concatenated; names must be unique across plugins.
    """


@hookspec
def angos_lock_providers() -> list[BackendSpec[LockProvider]]:  # type: ignore[empty-body]
    """Lock providers, selected by ``[metadata_store.<store>.<name>]`` (default ``memory``).

    Result: all lists are concatenated; names must be unique across plugins.
    """


@hookspec
def angos_caches() -> list[BackendSpec[Cache]]:  # type: ignore[empty-body]
    """Caches this plugin provides, selected by ``[cache.<name>]`` (default ``memory``).

    Result: all lists are concatenated; names must be unique across plugins.
    """


@hookspec
def angos_authenticators() -> list[BackendSpec[Authenticator]]:  # type: ignore[empty-body]
    """Authenticators this plugin provides (:class:`AuthenticatorSpec`, or a plain
    :class:`BackendSpec` for the ``[auth.<name>]`` form), selected by ``[auth.<name>]`` or
    ``[auth.<name>.<entry>]``; several may be configured at once, and every configured one
    joins the chain in the order of its ``order``.

    Result: all lists are concatenated; names must be unique across plugins. Each
    authenticator follows the result rule of :mod:`angos_core.identity`: an ``Identity``
    (valid), ``None`` (not its kind: the next one is asked), ``AuthenticationFailed``
    (its kind and invalid: 401 at once), ``IdentityProviderUnavailable`` (cannot decide:
    503, never a pass).
    """


@hookspec
def angos_authorizers() -> list[BackendSpec[Authorizer]]:  # type: ignore[empty-body]
    """Authorizers this plugin provides (:class:`AuthorizerSpec`, or a
    plain :class:`BackendSpec` for the ``[auth.<name>]`` form), selected by ``[auth.<name>]``
    or ``[auth.<name>.<entry>]`` (``[auth.webhook.<entry>]``); they share ``[auth]`` with the
    authenticators, and a name belongs to the kind whose plugin provides it.

    Result: all lists are concatenated; names must be unique across plugins. Every
    configured authorizer is asked, in file order, about each request the access policies
    allowed; the request must pass all. Each follows the result rule of
    :mod:`angos_core.authorization`: an ``AuthorizerDecision`` (allowed, or denied with a
    reason for the log); anything raised denies (fail closed).
    """

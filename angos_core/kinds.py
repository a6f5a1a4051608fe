"""Extension kinds: one declaration per kind of plugin-provided backend.

A kind (blob store, metadata store, lock provider, cache, authenticator, authorizer) is
one :class:`ExtensionKind` in :data:`EXTENSION_KINDS`. Everything core does per kind
follows from it:

* the hook the catalogue collects specs from (``hook``; the hook itself is declared in
  :mod:`angos_core.hookspecs`, pluggy needs a function per hook);
* the config section and how it selects backends (``selection``: :class:`Single`,
  :class:`SubTable` or :class:`Entries`), with the kind's default backend;
* the protocol a factory's object must satisfy, checked when the backend is built
  (:meth:`ExtensionKind.check`);
* the core wrapper that adds error translation and metrics (``wrapper``);
* whether :class:`~angos_core.registry.Stores` builds, opens and closes it
  (``stores_field``), and what ``/readyz`` makes of its health check (``readiness``);
* the startup summary and ``describe`` lines (one backend, or a list for an ``Entries``
  kind; ``summary`` says whether settings are shown).

Adding a kind is adding an entry here plus its hookspec. Order matters: backends are parsed,
built and opened in this order and closed in reverse.
"""

from __future__ import annotations

import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from angos_core.authorization import Authorizer
from angos_core.errors import PluginError
from angos_core.identity import Authenticator
from angos_core.protocols import BlobStore, Cache, LockProvider, MetadataStore

if TYPE_CHECKING:
    from angos_core.hookspecs import BackendSpec
    from angos_core.registry.wrappers import Observer

# --------------------------------------------------------------------------- selection forms


@dataclass(frozen=True)
class Single:
    """``[<section>.<backend>]``: exactly one backend of the kind, named by the sub-table.

    Absent, the kind takes ``inherit``'s backend and table (when that kind provides a
    backend of the same name), else ``default``, else the section is required and the error
    says ``missing`` (the fix). A backend of the same name as ``inherit``'s inherits its
    settings even when the section is present; its own keys override them.
    """

    section: str
    default: str | None = None
    missing: str = ""
    inherit: str | None = None


@dataclass(frozen=True)
class SubTable:
    """A sub-table of ``parent``'s backend table that is not one of its settings, as
    ``[metadata_store.fs.redis]`` selects lock provider ``redis``; ``default`` when there is
    none. At most one kind per parent selects this way."""

    parent: str
    default: str


@dataclass(frozen=True)
class Entries:
    """Any number of backends, configured at once, each a sub-table of the section named
    after it, in one of two forms its spec declares (a ``form`` attribute; none: ``table``):

    * ``table``: ``[<section>.<backend>]`` is its settings (``[auth.htpasswd]``);
    * ``entries``: every sub-table ``[<section>.<backend>.<entry>]`` is one entry, each
      parsed into the spec's ``config_type``; the factory gets them all at once, as a
      ``dict`` of entry name to settings in file order (``[auth.identity.alice]``,
      ``[auth.oidc.github]``), and builds one backend serving every entry.

    Several kinds may share one section (the authenticators and the authorizers share
    ``[auth]``); each backend name belongs to the kind that provides it. ``reserved`` names
    sub-tables that are core settings, parsed by core, not backends
    (``[auth.failure_limit]``). Choices keep the file's order; a consumer that needs another
    (the authenticator chain) sorts them itself. None configured is not an error."""

    section: str
    reserved: tuple[str, ...] = ()


Selection = Single | SubTable | Entries

#: What ``/readyz`` makes of a kind's ``health()``: ``read``, needed to serve pulls (and
#: pushes); ``write``, needed to accept pushes and deletes; ``advisory``, checked and
#: listed, fails neither; None, not checked.
Readiness = Literal["read", "write", "advisory"] | None

#: ``wrapper(backend, observer)``: the backend as core uses it.
Wrapper = Callable[[Any, "Observer | None"], Any]


def core_wrapper(target: str) -> Wrapper:
    """The wrapper ``module:attribute``, imported when first used: the registry package,
    where the storage wrappers live, imports the config, which imports this table."""

    def wrap(backend: Any, observer: Observer | None) -> Any:
        return pkgutil.resolve_name(target)(backend, observer)

    return wrap


# --------------------------------------------------------------------------- the declaration


def protocol_members(protocol: type) -> tuple[str, ...]:
    """The attributes and methods a ``typing.Protocol`` class requires, in declaration order
    (``typing.get_protocol_members`` arrives in Python 3.13)."""
    members: dict[str, None] = {}
    for base in reversed(protocol.__mro__):
        if base is object or base.__module__ == "typing":
            continue
        names = [*vars(base).get("__annotations__", {}), *vars(base)]
        members.update((n, None) for n in names if not n.startswith("_"))
    return tuple(members)


@dataclass(frozen=True)
class ExtensionKind:
    """One kind of backend that plugins provide; see the module docstring."""

    #: The kind's name in messages, the catalogue, the summary and ``/readyz``: ``blob_store``.
    name: str
    #: The same in words, for sentences: ``blob store``.
    title: str
    #: The hook whose specs are this kind's (declared in :mod:`angos_core.hookspecs`).
    hook: str
    #: The ``typing.Protocol`` (runtime-checkable) every built backend must satisfy.
    protocol: type
    selection: Selection
    #: Adds error translation and metrics around every backend of the kind; None: used as built.
    wrapper: Wrapper | None = None
    #: The :class:`~angos_core.registry.Stores` attribute the domain reads it by. Set, Stores
    #: builds, opens, health-checks and closes it with the other stores (a kind without an
    #: attribute of that name is reachable as ``stores.backend(name)``); None: not storage,
    #: its consumer builds it.
    stores_field: str | None = None
    readiness: Readiness = None
    #: What the startup summary shows of each backend: ``settings`` (its table, secrets
    #: redacted), or ``names`` (its name and entries only: kinds whose settings are
    #: credentials, such as password hashes).
    summary: Literal["settings", "names"] = "settings"

    @property
    def section(self) -> str | None:
        """The top-level config section this kind is selected in (None: under its parent's)."""
        return None if isinstance(self.selection, SubTable) else self.selection.section

    @property
    def default(self) -> str | None:
        """The backend used when the config names none."""
        return None if isinstance(self.selection, Entries) else self.selection.default

    @property
    def several(self) -> bool:
        """Whether the config selects any number of backends (else exactly one)."""
        return isinstance(self.selection, Entries)

    def check(self, backend: object, spec: BackendSpec[Any]) -> None:
        """Refuse, as a :class:`PluginError` naming the plugin, a backend that does not
        satisfy the kind's protocol: a broken plugin fails at startup, not at its first use."""
        if isinstance(backend, self.protocol):
            return
        missing = [m for m in protocol_members(self.protocol) if not hasattr(backend, m)]
        lacks = f"lacks {', '.join(missing)}" if missing else "does not satisfy it"
        raise PluginError(
            f"plugin distribution {spec.distribution or '?'!r}: {self.name} {spec.name!r} "
            f"built a {type(backend).__qualname__}, which is not a {self.protocol.__name__} "
            f"({lacks}); the plugin must be fixed or upgraded to this angos-core"
        )

    def wrap(self, backend: Any, observer: Observer | None = None) -> Any:
        return backend if self.wrapper is None else self.wrapper(backend, observer)


EXTENSION_KINDS: tuple[ExtensionKind, ...] = (
    ExtensionKind(
        name="blob_store",
        title="blob store",
        hook="angos_blob_stores",
        protocol=BlobStore,
        selection=Single("blob_store", missing="add for example [blob_store.fs] root_dir = ..."),
        wrapper=core_wrapper("angos_core.registry.wrappers:WrappedBlobStore"),
        stores_field="blobs",
        readiness="read",
    ),
    ExtensionKind(
        name="metadata_store",
        title="metadata store",
        hook="angos_metadata_stores",
        protocol=MetadataStore,
        selection=Single("metadata_store", inherit="blob_store"),
        wrapper=core_wrapper("angos_core.registry.wrappers:WrappedMetadataStore"),
        stores_field="meta",
        readiness="read",
    ),
    ExtensionKind(
        name="lock_provider",
        title="lock provider",
        hook="angos_lock_providers",
        protocol=LockProvider,
        selection=SubTable("metadata_store", default="memory"),
        wrapper=core_wrapper("angos_core.registry.wrappers:WrappedLockProvider"),
        stores_field="locks",
        readiness="write",
    ),
    ExtensionKind(
        name="cache",
        title="cache",
        hook="angos_caches",
        protocol=Cache,
        selection=Single("cache", default="memory"),
        wrapper=core_wrapper("angos_core.registry.wrappers:WrappedCache"),
        stores_field="cache",
        readiness="advisory",
    ),
    # Not storage: the authenticator chain (angos_core.auth.chain) builds and opens them.
    ExtensionKind(
        name="authenticator",
        title="authenticator",
        hook="angos_authenticators",
        protocol=Authenticator,
        selection=Entries("auth", reserved=("failure_limit",)),
        summary="names",
    ),
    # Not storage either: built and opened by angos_core.auth.authorizers.Authorizers; the
    # wrapper makes anything an authorizer raises a denial (fail closed) and times it.
    ExtensionKind(
        name="authorizer",
        title="authorizer",
        hook="angos_authorizers",
        protocol=Authorizer,
        selection=Entries("auth", reserved=("failure_limit",)),
        wrapper=core_wrapper("angos_core.auth.authorizers:WrappedAuthorizer"),
        summary="names",
    ),
)


def check_declarations(kinds: tuple[ExtensionKind, ...]) -> None:
    """Refuse a table whose entries contradict each other (a programming error in core or in
    a test that declares a kind, never a user's): checked when a catalogue is built."""
    seen: dict[str, ExtensionKind] = {}
    for kind in kinds:
        problem = ""
        if kind.name in seen:
            problem = "declared twice"
        elif kind.stores_field is not None and kind.several:
            problem = "a Stores field holds one backend: an Entries kind cannot have one"
        elif kind.readiness is not None and kind.stores_field is None:
            problem = "readiness without a stores_field: /readyz checks what Stores holds"
        elif isinstance(kind.selection, SubTable):
            parent = seen.get(kind.selection.parent)
            if parent is None or not isinstance(parent.selection, Single):
                problem = (
                    f"parent {kind.selection.parent!r} is not a Single kind declared before it"
                )
            elif any(
                isinstance(k.selection, SubTable) and k.selection.parent == parent.name
                for k in seen.values()
            ):
                problem = f"a second kind selected under {parent.name!r}"
        elif isinstance(kind.selection, Single):
            inherit = kind.selection.inherit
            if inherit is not None and inherit not in seen:
                problem = f"inherits from {inherit!r}, which is not declared before it"
            elif any(k.section == kind.section for k in seen.values()):
                problem = f"section {kind.section!r} is already another kind's"
        elif any(k.section == kind.section and not k.several for k in seen.values()):
            problem = f"section {kind.section!r} is already a Single kind's"
        if problem:
            raise PluginError(f"extension kind {kind.name!r}: {problem}")
        seen[kind.name] = kind

"""Finding backends: the plugin manager and the catalogue of installed backend specs.

Every backend, built-in or third-party, arrives the same way: a distribution declares an
entry point in the ``angos`` group whose object implements some ``angos_*`` hooks.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pluggy

from angos_core import hookspecs
from angos_core.errors import PluginError
from angos_core.hookspecs import BackendSpec
from angos_core.kinds import EXTENSION_KINDS, ExtensionKind, check_declarations

#: A kind's name (``ExtensionKind.name``).
Kind = str
#: The names of the declared kinds, in declaration order.
KINDS: tuple[Kind, ...] = tuple(kind.name for kind in EXTENSION_KINDS)


def make_plugin_manager(
    extra_plugins: Iterable[object] = (), *, load_entrypoints: bool = True
) -> pluggy.PluginManager:
    """A plugin manager with every installed ``angos`` entry point registered.

    Unknown ``angos_*`` hooks are refused (``check_pending``), so a typo in a plugin is an
    error at startup rather than a silently ignored backend.
    """
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    if load_entrypoints:
        _load_entrypoints(pm)
    for plugin in extra_plugins:
        pm.register(plugin)
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(str(exc)) from exc
    return pm


def _load_entrypoints(pm: pluggy.PluginManager) -> None:
    # pluggy's load_setuptools_entrypoints, but a broken plugin is named with its distribution.
    for dist in importlib.metadata.distributions():
        for ep in dist.entry_points:
            if ep.group != hookspecs.PROJECT or pm.has_plugin(ep.name) or pm.is_blocked(ep.name):
                continue
            try:
                plugin = ep.load()
            except Exception as exc:
                raise PluginError(
                    f"plugin {ep.name!r} ({ep.value}, from distribution "
                    f"{dist.metadata['name']!r}) failed to load: {exc!r}"
                ) from exc
            pm.register(plugin, name=ep.name)


@dataclass
class BackendCatalogue:
    """Every backend spec the installed plugins declare, by kind and name, and the kinds'
    declarations (the config is parsed and the backends built against these)."""

    specs: dict[Kind, dict[str, BackendSpec[Any]]]
    kinds: tuple[ExtensionKind, ...] = EXTENSION_KINDS

    @classmethod
    def from_plugin_manager(
        cls, pm: pluggy.PluginManager, kinds: tuple[ExtensionKind, ...] = EXTENSION_KINDS
    ) -> BackendCatalogue:
        """The specs of every kind in ``kinds``, collected from its hook."""
        check_declarations(kinds)
        specs: dict[Kind, dict[str, BackendSpec[Any]]] = {}
        for kind in kinds:
            by_name: dict[str, BackendSpec[Any]] = {}
            hook = getattr(pm.hook, kind.hook, None)
            if hook is None:
                raise PluginError(
                    f"extension kind {kind.name!r}: no hook spec {kind.hook!r}; declare it in "
                    "angos_core.hookspecs"
                )
            for impl_result in hook():
                for spec in impl_result or ():
                    if spec.name in by_name:
                        raise PluginError(
                            f"two plugins provide {kind.name} {spec.name!r}: "
                            f"{by_name[spec.name].distribution or '?'} and "
                            f"{spec.distribution or '?'}; uninstall one of them"
                        )
                    by_name[spec.name] = spec
            specs[kind.name] = by_name
        return cls(specs, kinds)

    def kind(self, name: Kind) -> ExtensionKind:
        """The declaration of kind ``name``."""
        for kind in self.kinds:
            if kind.name == name:
                return kind
        raise KeyError(name)

    def names(self, kind: Kind) -> list[str]:
        return sorted(self.specs[kind])

    def has(self, kind: Kind, name: str) -> bool:
        return name in self.specs[kind]

    def get(self, kind: Kind, name: str) -> BackendSpec[Any]:
        try:
            return self.specs[kind][name]
        except KeyError:
            raise PluginError(self.not_found(kind, name)) from None

    def not_found(self, kind: Kind, name: str) -> str:
        """One line: what is installed, and how to install ``name`` (or which names exist)."""
        installed = ", ".join(self.names(kind)) or "none"
        return f"{kind} {name!r} not found; installed: {installed}; {install_hint(kind, name)}"


#: The plugins in the Angos repository: distribution -> (folder in a checkout, what it
#: provides). None of them is on a package index, so "pip install angos-x" cannot work.
REPOSITORY_PLUGINS: dict[str, tuple[str, dict[Kind, tuple[str, ...]]]] = {
    "angos-fs": ("plugins/angos-fs", {"blob_store": ("fs",), "metadata_store": ("fs",)}),
    "angos-memory": ("plugins/angos-memory", {"lock_provider": ("memory",), "cache": ("memory",)}),
    "angos-s3": ("plugins/angos-s3", {"blob_store": ("s3",), "metadata_store": ("s3",)}),
    "angos-redis": ("plugins/angos-redis", {"lock_provider": ("redis",), "cache": ("redis",)}),
    "angos-auth-token": (
        "plugins/angos-auth-token",
        {"authenticator": ("token_service", "token")},
    ),
    "angos-sqlite": ("examples/angos-sqlite", {"metadata_store": ("sqlite",)}),
    "angos-auth-basic": (
        "plugins/angos-auth-basic",
        {"authenticator": ("identity", "htpasswd")},
    ),
    "angos-auth-oidc": ("plugins/angos-auth-oidc", {"authenticator": ("oidc",)}),
    "angos-auth-webhook": ("plugins/angos-auth-webhook", {"authorizer": ("webhook",)}),
}


def install_hint(kind: Kind, name: str) -> str:
    """How to get backend ``name`` of ``kind``: the repository plugin's install commands, or,
    for a name no repository plugin provides, the names they do provide."""
    for dist, (folder, provides) in REPOSITORY_PLUGINS.items():
        if name in provides.get(kind, ()):
            return (
                f"{dist} provides it and is not on a package index: pip install -e {folder} "
                f"(from a checkout), or pip install --find-links dist {dist} (after bash "
                "scripts/build-wheels)"
            )
    known = ", ".join(
        f"{n} ({dist})"
        for dist, (_, provides) in REPOSITORY_PLUGINS.items()
        for n in provides.get(kind, ())
    )
    provided = f"provide {kind} {known}" if known else f"provide no {kind}"
    return (
        f"no Angos plugin provides {name!r} (the repository's plugins {provided}); "
        f"check the name, or install the third-party plugin that provides it (by convention "
        f"the distribution angos-{name})"
    )


def load_catalogue(
    extra_plugins: Iterable[object] = (), kinds: tuple[ExtensionKind, ...] = EXTENSION_KINDS
) -> BackendCatalogue:
    return BackendCatalogue.from_plugin_manager(make_plugin_manager(extra_plugins), kinds)

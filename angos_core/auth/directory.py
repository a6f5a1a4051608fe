"""Revoking what was minted for an identity that is gone.

The registry's tokens stand for an identity another authenticator accepted (they carry its
provider and id). When a reload removes that identity (an ``[auth.identity.<entry>]``, a
line of the htpasswd file) or its provider (an ``[auth.oidc.<entry>]``, the whole
``[auth.htpasswd]``), the tokens minted for it must stop working at once, not when they
expire: the chain hands every :class:`MintedFor` authenticator a :data:`IdentityExists`
answered from the authenticators of the *current* chain, and those that can tell whether an
identity is still theirs implement :class:`IdentityDirectory`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

from angos_core.identity import Authenticator

#: ``exists(provider, identity_id)``: whether the chain still accepts that identity.
IdentityExists = Callable[[str, str], bool]


@runtime_checkable
class IdentityDirectory(Protocol):
    """Optional, beside :class:`~angos_core.identity.Authenticator`: whether an identity it
    accepted (``Identity.provider``, ``Identity.id``) is still configured."""

    def knows(self, provider: str, identity_id: str) -> bool: ...


@runtime_checkable
class MintedFor(Protocol):
    """Optional, beside :class:`~angos_core.identity.Authenticator`: credentials standing for
    an identity another authenticator accepted. ``check_minted_for`` is called once, when
    the chain is built; the authenticator refuses (``AuthenticationFailed``) a credential
    whose identity ``exists`` says is gone."""

    def check_minted_for(self, exists: IdentityExists) -> None: ...


def identity_exists(authenticators: Sequence[Authenticator]) -> IdentityExists:
    """``exists`` over ``authenticators``: the provider must be one of them (its name, or an
    entry of it: ``oidc.github`` under ``oidc``), and if it is a directory, know the id."""

    def exists(provider: str, identity_id: str) -> bool:
        for authenticator in authenticators:
            name = authenticator.name
            if provider == name or provider.startswith(f"{name}."):
                if isinstance(authenticator, IdentityDirectory):
                    return authenticator.knows(provider, identity_id)
                return True
        return False

    return exists

"""What both authenticators share: a username -> hash table checked against
``Authorization: Basic``.

Result rule (angos_core.identity): no Basic credentials, or a username this table does not
hold, is None (another authenticator may know it); a known username with the wrong password
raises ``AuthenticationFailed``. An unknown username is verified against a dummy hash of the
cost of the table's hashes first, so that it takes as long as a wrong password: timing does
not tell which usernames exist.
"""

from __future__ import annotations

import abc
import asyncio
from collections.abc import Mapping

from angos_auth_basic.hashing import Cost, dummy_hash, main_cost
from angos_auth_basic.verifier import PasswordVerifier, User
from angos_core.errors import AuthenticationFailed, Unauthorized
from angos_core.identity import ORDER_BASIC, Credentials, Identity

#: What the client reads on a wrong password: what core says to credentials no
#: authenticator recognizes (an unknown username), so the body does not tell them apart
#: either (Distribution answers both alike too).
FAILED_MESSAGE = Unauthorized.default_message


class UserTable:
    """A snapshot of the users, with a dummy hash of the cost most of them have."""

    def __init__(self, users: Mapping[str, User], cost: Cost | None, dummy: str) -> None:
        self.users = dict(users)
        self.cost = cost
        self.dummy = dummy

    @classmethod
    def build(cls, users: Mapping[str, User], previous: UserTable | None = None) -> UserTable:
        """Slow when it makes a dummy hash (``previous``'s serves while the cost is the
        same): call it in a thread."""
        cost = main_cost(u.password_hash for u in users.values())
        if previous is not None and previous.cost == cost:
            return cls(users, cost, previous.dummy)
        return cls(users, cost, dummy_hash(cost))


class BasicAuthenticator(abc.ABC):
    """Base of :class:`~angos_auth_basic.identities.IdentityAuthenticator` and
    :class:`~angos_auth_basic.htpasswd.HtpasswdAuthenticator`."""

    order = ORDER_BASIC

    def __init__(self, name: str, verifier: PasswordVerifier | None = None) -> None:
        self.name = name
        self.verifier = verifier if verifier is not None else PasswordVerifier()
        self._table: UserTable | None = None

    async def _current_table(self) -> UserTable:
        """The table to check this request against (a subclass may reload it first)."""
        if self._table is None:
            raise RuntimeError(f"authenticator {self.name} used before open()")
        return self._table

    async def authenticate(self, credentials: Credentials) -> Identity | None:
        if credentials.basic is None:
            return None
        username, password = credentials.basic
        table = await self._current_table()
        user = table.users.get(username)
        if user is None:
            await self.verifier.run(table.dummy, password)
            return None
        if await self.verifier.check(user, password):
            return Identity(id=username, username=username, provider=self.name, method="basic")
        raise AuthenticationFailed(self.name, FAILED_MESSAGE)

    def knows(self, provider: str, identity_id: str) -> bool:
        """Whether ``identity_id`` is still a user here (core revokes the tokens minted for
        one that is not: :mod:`angos_core.auth.directory`)."""
        return (
            provider == self.name and self._table is not None and identity_id in self._table.users
        )

    @abc.abstractmethod
    async def open(self) -> None:
        """Build the user table (reading what holds it)."""

    async def health(self) -> None:
        return None

    async def aclose(self) -> None:
        self.verifier.close()


async def build_table(users: Mapping[str, User]) -> UserTable:
    return await asyncio.to_thread(UserTable.build, users)

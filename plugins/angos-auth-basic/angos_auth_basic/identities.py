"""``[auth.identity.<name>] username, password``: users written in the config (the keys of
Angos in Rust), ``password`` an Argon2id or bcrypt hash."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from angos_auth_basic.basic import BasicAuthenticator, build_table
from angos_auth_basic.hashing import hash_problem
from angos_auth_basic.verifier import PasswordVerifier, User
from angos_core.errors import ConfigError, ConfigErrors

NAME = "identity"


def username_problem(username: str) -> str | None:
    """Why ``username`` cannot be presented with Basic authentication, or None."""
    if not username:
        return "cannot be empty"
    if ":" in username:
        # Basic credentials are "username:password", split at the first colon.
        return "cannot contain ':' (Basic authentication splits username and password there)"
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in username):
        return "cannot contain control characters"
    return None


@dataclass
class IdentityConfig:
    """One ``[auth.identity.<name>]`` table."""

    username: str
    #: An Argon2id (or bcrypt) hash, never the password: ``angos hash-password`` makes one.
    password: str = field(repr=False)

    def __post_init__(self) -> None:
        # Keys relative to the table: the config loader prefixes the table's path.
        errors = []
        if problem := username_problem(self.username):
            errors.append(ConfigError("username", problem))
        if problem := hash_problem(self.password):
            errors.append(ConfigError("password", problem))
        ConfigErrors.raise_if_any(errors)


class IdentityAuthenticator(BasicAuthenticator):
    """Every ``[auth.identity.*]`` entry as one lookup by username."""

    def __init__(
        self, entries: Mapping[str, IdentityConfig], verifier: PasswordVerifier | None = None
    ) -> None:
        super().__init__(NAME, verifier)
        users: dict[str, User] = {}
        entry_of: dict[str, str] = {}
        errors = []
        for entry, settings in entries.items():
            if settings.username in entry_of:
                errors.append(
                    ConfigError(
                        f"auth.{NAME}.{entry}.username",
                        f"{settings.username!r} is also the username of "
                        f"[auth.{NAME}.{entry_of[settings.username]}]: give each identity "
                        "its own username",
                    )
                )
                continue
            entry_of[settings.username] = entry
            users[settings.username] = User(settings.username, settings.password)
        ConfigErrors.raise_if_any(errors)
        self._users = users

    async def open(self) -> None:
        if self._table is None:
            self._table = await build_table(self._users)

"""``[auth.htpasswd] path``: users from a Distribution htpasswd file, reloaded when it changes.

The format is Distribution's: one ``user:hash`` per line, blank lines and lines starting with
``#`` skipped, the hash bcrypt (``htpasswd -B``). Other schemes htpasswd can write (Apache MD5
``$apr1$``, ``{SHA}``, crypt, SHA-crypt, plaintext) are refused with the line and the fix, as
is a username given twice: Distribution would fail those users' logins (or silently keep the
last line); here the file is not taken at all.

At most every ``check_interval_secs`` (1 s) a request stats the file (device, inode, size,
mtime); when that changed, the file is read again, so an edit or a replacement (``mv`` of a
new file) applies within a second, without a restart. A file that becomes unreadable or
invalid keeps the last good content serving and logs one warning until it is good again;
a file unreadable or invalid at startup is a config error naming ``auth.htpasswd.path``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from angos_auth_basic.basic import BasicAuthenticator, UserTable
from angos_auth_basic.hashing import hash_problem
from angos_auth_basic.identities import username_problem
from angos_auth_basic.verifier import PasswordVerifier, User
from angos_core.errors import ConfigError

NAME = "htpasswd"
KEY = f"auth.{NAME}.path"
CHECK_INTERVAL_SECS = 1.0

log = logging.getLogger("angos.auth.htpasswd")

_OTHER_SCHEMES = (
    ("$apr1$", "an Apache MD5 ($apr1$) hash"),
    ("{SHA}", "a SHA-1 ({SHA}) hash"),
    ("$1$", "an MD5-crypt ($1$) hash"),
    ("$5$", "a SHA-256-crypt ($5$) hash"),
    ("$6$", "a SHA-512-crypt ($6$) hash"),
    ("$argon2", "an Argon2 hash"),
)


class HtpasswdError(ValueError):
    """The file's content is not a usable htpasswd file (the message names the line)."""


@dataclass
class HtpasswdConfig:
    """``[auth.htpasswd]``."""

    #: The htpasswd file (relative to the working directory of ``angos serve``).
    path: Path


def _entry_problem(password_hash: str) -> str | None:
    if password_hash.startswith(("$2y$", "$2b$", "$2a$")):
        problem = hash_problem(password_hash)
        return f"its bcrypt hash {problem}" if problem else None
    scheme = next((what for prefix, what in _OTHER_SCHEMES if password_hash.startswith(prefix)),
                  None)  # fmt: skip
    if scheme is None:
        scheme = "a crypt(3) or plaintext password" if password_hash else "an empty password"
    return f"{scheme}; only bcrypt entries are accepted, as by Distribution"


def parse_htpasswd(text: str, known: Mapping[str, User] | None = None) -> dict[str, User]:
    """The users of an htpasswd file's ``text``. A user whose hash is unchanged keeps its
    record from ``known`` (so its remembered credential stays valid)."""
    known = known or {}
    users: dict[str, User] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        username, colon, password_hash = line.partition(":")
        where = f"line {number}"
        if not colon:
            raise HtpasswdError(f"{where}: expected user:hash (as `htpasswd -B` writes)")
        if problem := username_problem(username):
            raise HtpasswdError(f"{where}: the username {problem}")
        where = f"{where} (user {username!r})"
        if username in users:
            raise HtpasswdError(f"{where}: the user is listed twice; keep one line per user")
        if problem := _entry_problem(password_hash):
            raise HtpasswdError(
                f"{where}: {problem}; recreate it with `htpasswd -B <file> {username}` "
                "or `angos hash-password --bcrypt`"
            )
        old = known.get(username)
        same = old is not None and old.password_hash == password_hash
        users[username] = old if same and old is not None else User(username, password_hash)
    return users


Signature = tuple[int, int, int, int]


def _signature(path: Path) -> Signature:
    st = os.stat(path)
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


class HtpasswdAuthenticator(BasicAuthenticator):
    def __init__(
        self,
        config: HtpasswdConfig,
        verifier: PasswordVerifier | None = None,
        check_interval_secs: float = CHECK_INTERVAL_SECS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(NAME, verifier)
        self.path = config.path
        self.check_interval_secs = check_interval_secs
        self._clock = clock
        self._signature: Signature | None = None
        self._next_check = 0.0
        self._reloading = False
        self._warned = False

    def _load(self, previous: UserTable | None) -> tuple[Signature, UserTable]:
        """Read and parse the file (in a thread)."""
        # The signature first: a change landing while the file is read is seen next time.
        signature = _signature(self.path)
        text = self.path.read_bytes().decode("utf-8")
        users = parse_htpasswd(text, previous.users if previous else None)
        return signature, UserTable.build(users, previous)

    async def open(self) -> None:
        if self._table is not None:
            return
        try:
            self._signature, table = await asyncio.to_thread(self._load, None)
        except OSError as exc:
            raise ConfigError(
                KEY,
                f"cannot read {self.path}: {exc.strerror or exc}; create it with "
                f"`htpasswd -B -c {self.path} <user>` or point path at an existing file",
            ) from None
        except (HtpasswdError, UnicodeDecodeError) as exc:
            raise ConfigError(KEY, f"{self.path}: {_reason(exc)}") from None
        self._table = table
        self._next_check = self._clock() + self.check_interval_secs
        log.info("htpasswd %s: %d users", self.path, len(table.users))

    async def _current_table(self) -> UserTable:
        table = await super()._current_table()
        now = self._clock()
        if now < self._next_check or self._reloading:
            return table
        self._next_check = now + self.check_interval_secs
        self._reloading = True
        try:
            return await self._reload(table)
        finally:
            self._reloading = False

    async def _reload(self, table: UserTable) -> UserTable:
        try:
            if await asyncio.to_thread(_signature, self.path) == self._signature:
                return table
            signature, new = await asyncio.to_thread(self._load, table)
        except (OSError, HtpasswdError, UnicodeDecodeError) as exc:
            if not self._warned:
                self._warned = True
                log.warning(
                    "htpasswd %s: %s; still serving its last good content (%d users) "
                    "until the file is fixed",
                    self.path,
                    _reason(exc),
                    len(table.users),
                )
            return table
        changed = [name for name, user in table.users.items() if new.users.get(name) is not user]
        self.verifier.cache.forget(changed)
        self._signature, self._table = signature, new
        self._warned = False
        log.info(
            "htpasswd %s reloaded: %d users (%d changed or removed)",
            self.path,
            len(new.users),
            len(changed),
        )
        return new


def _reason(exc: Exception) -> str:
    if isinstance(exc, UnicodeDecodeError):
        return "not UTF-8 text"
    if isinstance(exc, OSError):
        return f"cannot read it: {exc.strerror or exc}"
    return str(exc)

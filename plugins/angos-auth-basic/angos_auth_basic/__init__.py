"""Basic authentication for Angos: ``[auth.identity.<name>]`` users with Argon2id or bcrypt
hashes, and ``[auth.htpasswd]`` Distribution htpasswd files."""

from angos_auth_basic.hashing import hash_password, hash_problem, verify_password
from angos_auth_basic.htpasswd import HtpasswdAuthenticator, HtpasswdConfig, parse_htpasswd
from angos_auth_basic.identities import IdentityAuthenticator, IdentityConfig
from angos_auth_basic.verifier import CredentialCache, PasswordVerifier, User

__all__ = [
    "CredentialCache",
    "HtpasswdAuthenticator",
    "HtpasswdConfig",
    "IdentityAuthenticator",
    "IdentityConfig",
    "PasswordVerifier",
    "User",
    "hash_password",
    "hash_problem",
    "parse_htpasswd",
    "verify_password",
]

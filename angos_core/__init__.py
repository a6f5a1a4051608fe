"""Angos core: the public API for plugin authors.

A plugin implements some of the hooks in :mod:`angos_core.hookspecs` with :data:`hookimpl`,
returns :class:`BackendSpec` objects (:class:`AuthenticatorSpec` for an authenticator,
:class:`AuthorizerSpec` for an authorizer) whose factories build objects satisfying the
protocols below, and raises the typed errors of :mod:`angos_core.errors`.
"""

from angos_core.authorization import Authorizer, AuthorizerDecision
from angos_core.config import ByteSize
from angos_core.errors import (
    AuthenticationFailed,
    BackendError,
    BackendReadOnly,
    BackendUnavailable,
    BlobDigestMismatch,
    BlobNotFound,
    IdentityProviderUnavailable,
    KeyNotFound,
    LockLost,
    LockUnavailable,
    UploadNotFound,
    UploadOffsetMismatch,
)
from angos_core.hookspecs import (
    CAP_ATOMIC_CREATE,
    CAP_DIRECT_PUT,
    CAP_LOCAL_FILES,
    CAP_PRESIGNED_URLS,
    CAP_SHARED,
    AuthenticatorSpec,
    AuthorizerSpec,
    BackendSpec,
    hookimpl,
)
from angos_core.identity import Authenticator, Credentials, Identity
from angos_core.protocols import (
    BlobPut,
    BlobStore,
    Cache,
    Lease,
    LockProvider,
    MetadataStore,
    UploadRef,
)

__version__ = "0.1.0"

__all__ = [
    "CAP_ATOMIC_CREATE",
    "CAP_DIRECT_PUT",
    "CAP_LOCAL_FILES",
    "CAP_PRESIGNED_URLS",
    "CAP_SHARED",
    "AuthenticationFailed",
    "Authenticator",
    "AuthenticatorSpec",
    "Authorizer",
    "AuthorizerDecision",
    "AuthorizerSpec",
    "BackendError",
    "BackendReadOnly",
    "BackendSpec",
    "BackendUnavailable",
    "BlobDigestMismatch",
    "BlobNotFound",
    "BlobPut",
    "BlobStore",
    "ByteSize",
    "Cache",
    "Credentials",
    "Identity",
    "IdentityProviderUnavailable",
    "KeyNotFound",
    "Lease",
    "LockLost",
    "LockProvider",
    "LockUnavailable",
    "MetadataStore",
    "UploadNotFound",
    "UploadOffsetMismatch",
    "UploadRef",
    "hookimpl",
]

"""One typed error hierarchy for the whole registry.

Two families:

* :class:`RegistryError` -- what a client did wrong or asked for that is not there. Each carries
  the OCI Distribution error ``code`` and the HTTP status it maps to; the HTTP layer turns it
  into the spec's JSON error body and nothing else.
* :class:`BackendError` -- what a storage, lock or cache backend reports. Each carries the
  ``backend`` name (``"fs"``, ``"s3"``, ...) so an operator reading a log knows which driver
  failed, as CNCF Distribution's driver errors do.

:class:`ConfigError` is raised at startup only and names the offending key.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class AngosError(Exception):
    """Base of every error Angos raises on purpose."""


# --------------------------------------------------------------------------- config


class ConfigError(AngosError):
    """The configuration cannot be used. ``key`` is the dotted path of the offending key."""

    def __init__(self, key: str, message: str) -> None:
        self.key = key
        self.message = message
        super().__init__(f"{key}: {message}" if key else message)

    @property
    def errors(self) -> list[ConfigError]:
        """Every problem this error reports, one per line of ``angos check-config``."""
        return [self]


class ConfigErrors(ConfigError):
    """Several problems found in one configuration (``check-config`` reports them all).

    ``key`` and ``message`` are the first problem's, so code that handles one
    :class:`ConfigError` still reads something true; ``errors`` holds every one.
    """

    def __init__(self, errors: Sequence[ConfigError]) -> None:
        self._errors = [one for error in errors for one in error.errors]
        first = self._errors[0]
        super().__init__(first.key, first.message)
        self.args = ("\n".join(str(error) for error in self._errors),)

    @property
    def errors(self) -> list[ConfigError]:
        return list(self._errors)

    @staticmethod
    def raise_if_any(errors: Sequence[ConfigError]) -> None:
        """Raise nothing for no errors, the error itself for one, ``ConfigErrors`` for more."""
        if len(errors) == 1:
            raise errors[0]
        if errors:
            raise ConfigErrors(errors)


class PluginError(AngosError):
    """Plugins could not be loaded or a named backend is not installed."""


# --------------------------------------------------------------------------- registry


class RegistryError(AngosError):
    """An error reported to the client with the spec's JSON body."""

    code = "UNKNOWN"
    status = 500
    default_message = "unknown error"

    def __init__(self, message: str | None = None, detail: Any = None) -> None:
        self.message = message or self.default_message
        self.detail = detail
        super().__init__(self.message)


class BlobUnknown(RegistryError):
    code, status, default_message = "BLOB_UNKNOWN", 404, "blob unknown to registry"


class BlobUploadInvalid(RegistryError):
    code, status, default_message = "BLOB_UPLOAD_INVALID", 400, "blob upload invalid"


class RangeInvalid(BlobUploadInvalid):
    """An upload chunk that does not start where the upload currently ends."""

    status = 416
    default_message = "chunk does not start at the current end of the upload"


class BlobUploadUnknown(RegistryError):
    code, status, default_message = "BLOB_UPLOAD_UNKNOWN", 404, "blob upload unknown to registry"


class DigestInvalid(RegistryError):
    code, status, default_message = (
        "DIGEST_INVALID",
        400,
        "provided digest did not match uploaded content",
    )


class ManifestBlobUnknown(RegistryError):
    code, status, default_message = (
        "MANIFEST_BLOB_UNKNOWN",
        400,
        "manifest references a manifest or blob unknown to registry",
    )


class ManifestInvalid(RegistryError):
    code, status, default_message = "MANIFEST_INVALID", 400, "manifest invalid"


class ManifestUnknown(RegistryError):
    code, status, default_message = "MANIFEST_UNKNOWN", 404, "manifest unknown to registry"


class NameInvalid(RegistryError):
    code, status, default_message = "NAME_INVALID", 400, "invalid repository name"


class NameUnknown(RegistryError):
    code, status, default_message = "NAME_UNKNOWN", 404, "repository name not known to registry"


class SizeInvalid(RegistryError):
    code, status, default_message = (
        "SIZE_INVALID",
        400,
        "provided length did not match content length",
    )


class TagInvalid(RegistryError):
    # Not in the v1.1 code list; MANIFEST_INVALID is what clients understand for a bad tag.
    code, status, default_message = "MANIFEST_INVALID", 400, "invalid tag"


class PaginationNumberInvalid(RegistryError):
    code, status, default_message = "PAGINATION_NUMBER_INVALID", 400, "invalid number of results"


class RangeNotSatisfiable(RegistryError):
    code, status, default_message = "BLOB_UNKNOWN", 416, "requested range not satisfiable"


class Unsupported(RegistryError):
    code, status, default_message = "UNSUPPORTED", 405, "the operation is unsupported"


class ReadOnlyMode(Unsupported):
    """A write while ``[maintenance.read_only]`` is on. 405 ``UNSUPPORTED`` with Distribution's
    message for its read-only mode: a client does not retry it (503 it would, for minutes)."""

    default_message = "registry is in read-only mode"


class Denied(RegistryError):
    code, status, default_message = "DENIED", 403, "requested access to the resource is denied"


class TagImmutable(RegistryError):
    """A push would move, or a delete remove, a tag that ``immutable_tags`` protects. 409
    ``CONFLICT`` with the message docker prints, as Angos in Rust answers it."""

    code, status, default_message = "CONFLICT", 409, "tag is immutable"

    def __init__(self, tag: str, *, deleting: bool = False) -> None:
        what = "deleted" if deleting else "overwritten"
        super().__init__(f"Tag '{tag}' is immutable and cannot be {what}", {"tag": tag})


class Unauthorized(RegistryError):
    """Credentials are missing where the request needs them, or invalid: 401 with the
    ``WWW-Authenticate`` challenge core adds."""

    code, status, default_message = "UNAUTHORIZED", 401, "authentication required"
    #: RFC 6750's ``error`` of the challenge (``insufficient_scope``); empty: none.
    challenge_error = ""


class InsufficientScope(Unauthorized):
    """The caller's token does not grant what the request needs: 401 whose challenge names
    the needed scope with ``error="insufficient_scope"`` (Distribution's answer)."""

    default_message = "the credential does not grant the access this request needs"
    challenge_error = "insufficient_scope"


class TooManyRequests(RegistryError):
    code, status, default_message = "TOOMANYREQUESTS", 429, "too many requests"

    def __init__(
        self, message: str | None = None, detail: Any = None, retry_after_secs: int = 1
    ) -> None:
        super().__init__(message, detail)
        #: Sent as ``Retry-After``.
        self.retry_after_secs = retry_after_secs


class ManifestTooLarge(RegistryError):
    code, status, default_message = "SIZE_INVALID", 413, "manifest too large"


class ServiceUnavailable(RegistryError):
    """A backend or lock could not serve the request; the client may retry."""

    code, status, default_message = "UNAVAILABLE", 503, "service unavailable"


class UpstreamUnavailable(ServiceUnavailable):
    """A pull-through namespace needs an upstream that did not answer usefully (down, 5xx,
    429 past the retries, refused our credentials, sent bytes that do not match their
    digest). The message names the upstreams tried and why, never a credential."""


# --------------------------------------------------------------------------- backends


class BackendError(AngosError):
    """A backend failed. ``backend`` names the driver (``fs``, ``s3``, ``redis``, ...).

    ``message`` may reach a client (503 bodies, ``/readyz``): it names store-relative keys
    only. ``log_detail`` (an absolute path, say) is for the operator: it is in ``str(exc)``,
    which is what log lines print, and never in a response.
    """

    def __init__(self, backend: str, message: str, *, log_detail: str = "") -> None:
        self.backend = backend
        self.message = message
        self.log_detail = log_detail
        text = f"{backend}: {message}"
        super().__init__(f"{text} ({log_detail})" if log_detail else text)


class BackendUnavailable(BackendError):
    """The backend cannot be reached or timed out. Mapped to 503; safe to retry."""


class BackendReadOnly(BackendUnavailable):
    """The backend serves reads but refuses writes (read-only mount, full disk, ...).

    Raised by ``health()`` only. A subclass of :class:`BackendUnavailable`, so code that
    knows nothing of it still treats it as a failure; ``/readyz`` tells it apart: the
    registry stays ready for pulls and only the write check fails.
    """


class BlobNotFound(BackendError):
    """The blob store holds no committed blob with that digest."""


class UploadNotFound(BackendError):
    """The blob store holds no upload session with that id."""


class BlobDigestMismatch(BackendError):
    """``BlobPut.put_blob``: the stream's bytes do not hash to the digest it was given, or
    are not the size given; nothing was stored."""


class UploadOffsetMismatch(BackendError):
    """An append started somewhere other than the current end of the upload."""

    def __init__(self, backend: str, expected: int, actual: int) -> None:
        self.expected = expected
        self.actual = actual
        super().__init__(backend, f"append at offset {actual}, upload size is {expected}")


class KeyNotFound(BackendError):
    """The metadata store holds no object under that key."""


class LockUnavailable(BackendError):
    """A lock could not be acquired within the provider's bounded retries."""


class LockLost(BackendError):
    """A held lock expired or could not be renewed; the holder must not commit."""


# --------------------------------------------------------------------------- authenticators


class AuthenticationFailed(AngosError):
    """Credentials of an authenticator's kind that it refuses (401). ``message`` reaches the
    client and never contains the credential; ``authenticator`` names the config entry."""

    def __init__(self, authenticator: str, message: str = "invalid credentials") -> None:
        super().__init__(message)
        self.authenticator = authenticator
        self.message = message


class IdentityProviderUnavailable(AngosError):
    """An authenticator cannot decide now (issuer unreachable, file unreadable): 503, never a
    pass. ``message`` may reach a client: no secrets in it."""

    def __init__(self, authenticator: str, message: str) -> None:
        super().__init__(f"{authenticator}: {message}")
        self.authenticator = authenticator
        self.message = message

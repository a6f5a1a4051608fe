"""TOML configuration -> typed configuration.

The sub-table name selects the plugin::

    [blob_store.fs]             # blob store "fs"
    [metadata_store.s3]         # optional; absent -> the blob store's backend and settings
    [metadata_store.s3.redis]   # lock provider "redis"; absent -> "memory"
    [cache.redis]               # absent -> cache "memory"

How each kind is selected (these forms, and the ``Entries`` form for kinds configured
several at once) is its declaration in :mod:`angos_core.kinds`; :class:`_KindsParse` reads
it. Every backend declares a dataclass for its table; :func:`parse_table` fills it and
refuses unknown keys and wrong types with a :class:`ConfigError` that names the dotted key.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

from angos_core.auth.config import AuthConfig, parse_auth, with_client_certificates
from angos_core.errors import ConfigError, ConfigErrors, PluginError
from angos_core.hookspecs import CAP_DIRECT_PUT, CAP_SHARED, BackendSpec
from angos_core.kinds import EXTENSION_KINDS, Entries, ExtensionKind, Single, SubTable
from angos_core.plugins import BackendCatalogue, Kind
from angos_core.policy.engine import PolicyEngine, check_namespaces
from angos_core.policy.immutable import TagImmutability
from angos_core.policy.retention import RetentionRules
from angos_core.policy.sections import repository_key
from angos_core.protocols import BlobPut

T = TypeVar("T")

DEFAULT_CONFIG_FILE = "config.toml"
DEFAULT_ROOT_DIR = "./registry-data"

# --------------------------------------------------------------------------- value types


class ByteSize(int):
    """A size in bytes. Accepts an integer or a string with an SI or binary unit.

    ``"5GB"`` is 5 * 1000**3 and ``"50MiB"`` is 50 * 1024**2: units mean what they say.
    """

    _UNITS: typing.ClassVar[dict[str, int]] = {
        "": 1,
        "b": 1,
        "kb": 1000,
        "mb": 1000**2,
        "gb": 1000**3,
        "tb": 1000**4,
        "kib": 1024,
        "mib": 1024**2,
        "gib": 1024**3,
        "tib": 1024**4,
    }
    _RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")

    @classmethod
    def parse(cls, value: object, key: str = "") -> ByteSize:
        if isinstance(value, bool):
            raise ConfigError(key, f"expected a size such as 50MiB or 5GB, got {value!r}")
        if isinstance(value, int):
            if value < 0:
                raise ConfigError(key, f"a size cannot be negative, got {value}")
            return cls(value)
        if isinstance(value, str):
            m = cls._RE.match(value)
            unit = m.group(2).lower() if m else ""
            if m and unit in cls._UNITS:
                return cls(int(float(m.group(1)) * cls._UNITS[unit]))
        raise ConfigError(
            key,
            f"expected a size such as 50MiB or 5GB (units: B, KB, MB, GB, TB, KiB, MiB, GiB, "
            f"TiB), got {value!r}",
        )


# --------------------------------------------------------------------------- table parsing


def _type_name(tp: Any) -> str:
    if tp is ByteSize:
        return "size"
    if get_origin(tp) is Literal:
        return " or ".join(repr(a) for a in get_args(tp))
    return getattr(tp, "__name__", str(tp))


def _convert(tp: Any, value: Any, key: str) -> Any:
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        if len(args) == 2 and type(None) in args:
            # An optional value: its own errors, each under its own key (a table's).
            (arg,) = (a for a in args if a is not type(None))
            return _convert(arg, value, key)
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(arg, value, key)
            except ConfigError as exc:
                errors.append(exc.message)
        raise ConfigError(key, "; ".join(errors))
    if origin is Literal:
        if value in get_args(tp):
            return value
        raise ConfigError(key, f"expected {_type_name(tp)}, got {value!r}")
    if origin is list:
        (item,) = get_args(tp) or (Any,)
        if not isinstance(value, list):
            raise ConfigError(key, f"expected a list, got {type(value).__name__}")
        return [_convert(item, v, f"{key}[{i}]") for i, v in enumerate(value)]
    if tp is Any:
        return value
    if tp is ByteSize:
        return ByteSize.parse(value, key)
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    elif tp is Path:
        if isinstance(value, str):
            return Path(value)
    elif dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if isinstance(value, dict):
            return parse_table(tp, value, key)
    else:  # pragma: no cover - a plugin declared a field type we do not know
        raise ConfigError(key, f"unsupported field type {tp!r} in the backend's config class")
    raise ConfigError(key, f"expected {_type_name(tp)}, got {type(value).__name__} {value!r}")


def config_fields(cls: type[Any]) -> dict[str, Any]:
    """The field names of a config dataclass and their resolved types."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if f.init}


def parse_table(cls: type[T], table: dict[str, Any], path: str) -> T:
    """Fill dataclass ``cls`` from a TOML table; errors name the dotted key under ``path``.

    Every unknown key, wrong type and missing key of the table is reported, not only the
    first (:class:`ConfigErrors` when there are several). A ``ConfigError`` that ``cls``'s
    ``__post_init__`` raises with one of its field names as the key (a plugin's class does
    not know where its table sits) is reported under ``path.<field>``.
    """
    known = config_fields(cls)
    errors: list[ConfigError] = [
        ConfigError(
            f"{path}.{key}",
            f"unknown key; known keys here: {', '.join(sorted(known)) or 'none'}",
        )
        for key in table
        if key not in known
    ]
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if not f.init:
            continue
        if f.name in table:
            try:
                values[f.name] = _convert(known[f.name], table[f.name], f"{path}.{f.name}")
            except ConfigError as exc:
                errors.extend(exc.errors)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            errors.append(ConfigError(f"{path}.{f.name}", "required key is missing"))
    ConfigErrors.raise_if_any(errors)
    try:
        return cls(**values)
    except ConfigError as exc:
        ConfigErrors.raise_if_any(
            [ConfigError(f"{path}.{e.key}", e.message) if e.key in known else e for e in exc.errors]
        )
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(path, str(exc)) from exc


# --------------------------------------------------------------------------- core sections


@dataclass
class TlsConfig:
    """``[server.tls]``: serve HTTPS (Angos's keys). The files are PEM; they are read at
    startup and again whenever they change (see :mod:`angos_core.tls`)."""

    #: The server's certificate, followed by the intermediates a client needs to reach its
    #: root (the chain, leaf first).
    server_certificate_bundle: Path
    #: The private key of the leaf certificate (unencrypted).
    server_private_key: Path
    #: CA certificates that issue client certificates (mTLS). Unset: no client certificate
    #: is asked for, none is ever trusted.
    client_ca_bundle: Path | None = None
    #: With ``client_ca_bundle``: ``optional`` lets a client without a certificate in (it
    #: may authenticate otherwise); ``required`` refuses it at the handshake. A certificate
    #: that is presented and does not verify is refused either way.
    client_auth: Literal["optional", "required"] = "optional"

    def __post_init__(self) -> None:
        if self.client_auth == "required" and self.client_ca_bundle is None:
            raise ConfigError(
                "server.tls.client_auth",
                '"required" needs client_ca_bundle: set server.tls.client_ca_bundle to the PEM '
                'file of the CAs that issue client certificates, or client_auth = "optional"',
            )


@dataclass
class ServerConfig:
    bind_address: str = "0.0.0.0"
    port: int = 8000
    #: Processes serving the port (SO_REUSEPORT); more than 1 needs a shared lock and cache.
    workers: int = 1
    #: After SIGTERM, how long in-flight requests may run before they are cancelled.
    shutdown_grace_secs: float = 30.0
    #: A request body that sends nothing for this long is cut (408). 0 disables.
    read_timeout_secs: float = 60.0
    #: An idle connection (no request, or a request's headers stalled) is closed after this.
    keepalive_timeout_secs: float = 75.0
    #: How long ``GET /readyz`` waits for each backend's health check.
    health_timeout_secs: float = 2.0
    #: Connections one process holds at most (lowered to fit the open-file limit); at the
    #: cap a new connection closes the oldest idle one.
    max_connections: int = 4096
    #: The ``Server`` header of every response: no versions for a scanner to match.
    server_header: str = "angos"
    #: ``[server.tls]``: HTTPS (and mTLS); None serves plain HTTP.
    tls: TlsConfig | None = None

    def __post_init__(self) -> None:
        errors = []
        if not 0 <= self.port <= 65535:
            errors.append(ConfigError("server.port", port_problem(self.port)))
        if self.workers < 1:
            errors.append(ConfigError("server.workers", f"must be at least 1, got {self.workers}"))
        if self.max_connections < 1:
            errors.append(
                ConfigError(
                    "server.max_connections", f"must be at least 1, got {self.max_connections}"
                )
            )
        for key in ("shutdown_grace_secs", "read_timeout_secs"):
            if getattr(self, key) < 0:
                errors.append(
                    ConfigError(f"server.{key}", f"cannot be negative, got {getattr(self, key)}")
                )
        for key in ("keepalive_timeout_secs", "health_timeout_secs"):
            if getattr(self, key) <= 0:
                errors.append(
                    ConfigError(f"server.{key}", f"must be positive, got {getattr(self, key)}")
                )
        header = self.server_header
        if not header or not header.isascii() or not header.isprintable():
            errors.append(
                ConfigError(
                    "server.server_header",
                    f"must be non-empty printable ASCII (it is sent as a header), got {header!r}",
                )
            )
        ConfigErrors.raise_if_any(errors)


def port_problem(port: int) -> str:
    """Why ``port`` cannot be listened on, for ``[server] port`` and ``--port`` alike."""
    return f"must be between 0 and 65535 (0: any free port), got {port}"


@dataclass
class AccessPolicyConfig:
    """``[global.access_policy]`` and ``[repository."<namespace>".access_policy]`` (Angos's
    keys): CEL ``rules``, OR'd; under ``default = "deny"`` each is an allow rule, under
    ``"allow"`` each is a deny rule. Compiled by :class:`angos_core.policy.PolicyEngine`."""

    rules: list[str]
    default: Literal["allow", "deny"] = "deny"


@dataclass
class RetentionPolicyConfig:
    """``[global.retention_policy]`` and ``[repository."<namespace>".retention_policy]``
    (Angos's keys): CEL keep-rules, OR'd with each other and with the global policy's.
    Compiled by :class:`angos_core.policy.retention.RetentionRules`, applied by
    ``angos prune``."""

    rules: list[str]


@dataclass
class UpstreamConfig:
    """``[[repository."<namespace>".upstream]]``: one registry the namespace caches (Angos's
    keys). A namespace lists several, tried in order (see :mod:`angos_core.upstream`)."""

    #: The registry's base URL, e.g. ``https://registry-1.docker.io`` (no ``/v2``).
    url: str
    #: Basic credentials, sent as they are or to the token service a 401 names.
    username: str | None = None
    #: Out of the repr: a config printed in a traceback or a debug line shows no secret.
    password: str | None = field(default=None, repr=False)
    #: A file holding the password (or a token), read at startup, trailing newline dropped.
    password_file: Path | None = None

    def __post_init__(self) -> None:
        if not re.fullmatch(r"https?://[^/\s?#]+(/[^\s?#]*)?", self.url):
            raise ConfigError(
                "url",
                f"expected an http:// or https:// registry URL such as "
                f'"https://registry-1.docker.io", got {self.url!r}',
            )
        if "@" in self.url.split("/")[2]:
            # A URL appears in logs, errors and metric labels: credentials go elsewhere.
            raise ConfigError(
                "url", "holds credentials: move them to username and password (or password_file)"
            )
        self.url = self.url.rstrip("/")
        if self.password is not None and self.password_file is not None:
            raise ConfigError("password_file", "set either password or password_file, not both")
        if self.password_file is not None:
            try:
                self.password = self.password_file.read_text().rstrip("\r\n")
            except OSError as exc:
                raise ConfigError(
                    "password_file", f"cannot read {self.password_file}: {exc.strerror}"
                ) from None
        if (self.username is None) != (self.password is None):
            raise ConfigError(
                "username" if self.username is None else "password",
                "username and password (or password_file) go together: set both or neither",
            )


@dataclass
class RepositoryConfig:
    """``[repository."<namespace>"]``: settings for the repositories under a name prefix."""

    access_policy: AccessPolicyConfig | None = None
    retention_policy: RetentionPolicyConfig | None = None
    #: Override ``[global] immutable_tags`` / ``immutable_tags_exclusions`` (None: inherit).
    immutable_tags: bool | None = None
    immutable_tags_exclusions: list[str] | None = None
    #: A pull-through cache of these registries, tried in order; empty: an ordinary
    #: namespace. A cached namespace is read-only to clients.
    upstream: list[UpstreamConfig] = field(default_factory=list)
    #: A cached tag is served without asking the upstream for this long after it was
    #: fetched or re-validated (a HEAD); an immutable tag, and a digest, never are.
    tag_ttl_secs: float = 300.0

    def __post_init__(self) -> None:
        if self.tag_ttl_secs < 0:
            raise ConfigError(
                "tag_ttl_secs",
                f"cannot be negative, got {self.tag_ttl_secs}: set the seconds a cached tag "
                "is served before it is re-validated, or 0 to re-validate every pull",
            )


@dataclass
class GlobalConfig:
    #: Answer blob GETs with a 307 to a presigned URL when the blob store can make one.
    enable_redirect: bool = True
    #: Seconds a presigned URL stays valid.
    redirect_expiry_secs: int = 900
    #: Manifests larger than this are refused with 413.
    max_manifest_size: ByteSize = field(default_factory=lambda: ByteSize(4 * 1024 * 1024))
    #: A manifest listing more descriptors (config, layers, index children, subject) than
    #: this is refused with MANIFEST_INVALID: each one costs a reference check.
    max_manifest_descriptors: int = 10000
    #: Accept an index whose child manifests are not in the repository yet (the spec's MAY;
    #: some build tools push the index first). Blobs an image manifest lists stay required.
    accept_index_with_missing_children: bool = False
    #: Open upload sessions one process admits per repository, and per client address
    #: (429 beyond); 0: no limit. See angos_core.registry.upload_limits.
    max_upload_sessions_per_repository: int = 5000
    max_upload_sessions_per_client: int = 1000
    #: ``[global.access_policy]``: runs for every request, before the repository's.
    access_policy: AccessPolicyConfig | None = None
    #: ``[global.retention_policy]``: keep-rules for every repository (``angos prune``).
    retention_policy: RetentionPolicyConfig | None = None
    #: A tag, once pushed, can be neither moved nor deleted (angos_core.policy.immutable)
    #: unless one of the exclusions (regular expressions) matches it.
    immutable_tags: bool = False
    immutable_tags_exclusions: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.max_manifest_descriptors < 1:
            raise ConfigError(
                "global.max_manifest_descriptors",
                f"must be at least 1, got {self.max_manifest_descriptors}: set it to the most "
                "descriptors one manifest may list, e.g. 10000",
            )
        for key in ("max_upload_sessions_per_repository", "max_upload_sessions_per_client"):
            if getattr(self, key) < 0:
                raise ConfigError(
                    f"global.{key}",
                    f"cannot be negative, got {getattr(self, key)}: set the most open upload "
                    "sessions to admit, or 0 for no limit",
                )


@dataclass
class LogConfig:
    format: Literal["text", "json"] = "text"
    level: Literal["debug", "info", "warning", "error"] = "info"


@dataclass
class UploadPurgingConfig:
    """``[maintenance.upload_purging]``: abort upload sessions abandoned by their clients.

    As CNCF Distribution's ``storage.maintenance.uploadpurging``: on by default, every
    ``interval_secs`` the sessions started more than ``age_secs`` ago are aborted.
    """

    enabled: bool = True
    #: A session started longer ago than this is abandoned (7 days).
    age_secs: float = 604800.0
    #: A session that holds no byte this long after its start is abandoned too (1 hour).
    empty_age_secs: float = 3600.0
    #: Seconds between two passes (1 hour: Distribution's is 1 day, but then an empty
    #: session would stay a day); the first runs 1-2 minutes after startup.
    interval_secs: float = 3600.0
    #: Only log what would be purged.
    dry_run: bool = False

    def __post_init__(self) -> None:
        fixes = {
            "age_secs": "set it to the seconds after its start when an unfinished upload counts "
            "as abandoned, e.g. 604800 (7 days)",
            "empty_age_secs": "set it to the seconds after its start when an upload that "
            "received no byte counts as abandoned, e.g. 3600 (1 hour)",
            "interval_secs": "set it to the seconds between two purge passes, e.g. 3600 (1 hour)",
        }
        for key, fix in fixes.items():
            value = getattr(self, key)
            if not value > 0:  # also refuses NaN
                raise ConfigError(
                    f"maintenance.upload_purging.{key}",
                    f"must be positive, got {value}: {fix} (or enabled = false to turn upload "
                    "purging off)",
                )


#: By default a blob written in the last hour is kept: it may belong to a push whose
#: manifest has not arrived yet (``angos gc``, ``angos prune``). Here rather than in
#: angos_core.registry.gc, so that the CLI's options read it without importing the collector.
GC_MIN_AGE_SECS = 3600
#: Repositories or objects a run works on at once (``angos gc --jobs``,
#: ``[maintenance.gc] concurrency``): enough to keep the fs store's 16 I/O threads busy,
#: or as many S3 requests in flight.
GC_CONCURRENCY = 16


@dataclass
class GcScheduleConfig:
    """``[maintenance.gc]``: run ``angos gc`` inside the server (one worker), on a schedule.

    Off by default. Safe beside the server's own pushes (docs/operations.md); for several
    replicas, run ``angos gc`` from one place instead (a cron job) with the shared lock.
    """

    #: Seconds between two collections; 0: never (the default).
    interval_secs: float = 0.0
    #: As ``angos gc --min-age-secs``.
    min_age_secs: float = GC_MIN_AGE_SECS
    #: As ``angos gc --delete-untagged``.
    delete_untagged: bool = False
    #: Only log what would be deleted.
    dry_run: bool = False
    #: As ``angos gc --jobs``: repositories or objects a run works on at once.
    concurrency: int = GC_CONCURRENCY

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ConfigError(
                "maintenance.gc.concurrency",
                f"must be at least 1, got {self.concurrency}: how many objects a collection "
                "deletes at once, e.g. 16",
            )
        if not self.interval_secs >= 0:  # also refuses NaN
            raise ConfigError(
                "maintenance.gc.interval_secs",
                f"cannot be negative, got {self.interval_secs}: set the seconds between two "
                "collections, e.g. 86400 (a day), or 0 to leave them to `angos gc`",
            )
        if not self.min_age_secs >= 0:
            raise ConfigError(
                "maintenance.gc.min_age_secs",
                f"cannot be negative, got {self.min_age_secs}: set how long an unreferenced "
                "blob is kept after it was written or found, e.g. 3600",
            )


@dataclass
class PruneScheduleConfig:
    """``[maintenance.prune]``: run ``angos prune`` inside the server (one worker), on a
    schedule. Off by default; as ``[maintenance.gc]``, for several replicas run
    ``angos prune`` from one place instead."""

    #: Seconds between two runs; 0: never (the default).
    interval_secs: float = 0.0
    #: As ``angos prune --min-age-secs``.
    min_age_secs: float = GC_MIN_AGE_SECS
    #: Only log what would be pruned.
    dry_run: bool = False

    def __post_init__(self) -> None:
        if not self.interval_secs >= 0:  # also refuses NaN
            raise ConfigError(
                "maintenance.prune.interval_secs",
                f"cannot be negative, got {self.interval_secs}: set the seconds between two "
                "prune runs, e.g. 86400 (a day), or 0 to leave them to `angos prune`",
            )
        if not self.min_age_secs >= 0:
            raise ConfigError(
                "maintenance.prune.min_age_secs",
                f"cannot be negative, got {self.min_age_secs}: set how long a pushed "
                "manifest is never pruned, e.g. 3600",
            )


@dataclass
class ReadOnlyConfig:
    """``[maintenance.read_only]``: refuse every write, serve every read (CNCF Distribution's
    ``storage.maintenance.readonly``), for a migration or a maintenance window. Reloadable
    (SIGHUP); ``angos gc`` and ``angos prune`` from the command line are not affected, the
    server's own ``[maintenance.gc]`` skips its passes while it is on."""

    enabled: bool = False


@dataclass
class MaintenanceConfig:
    """``[maintenance]``: background work on the stores."""

    upload_purging: UploadPurgingConfig = field(default_factory=UploadPurgingConfig)
    gc: GcScheduleConfig = field(default_factory=GcScheduleConfig)
    prune: PruneScheduleConfig = field(default_factory=PruneScheduleConfig)
    read_only: ReadOnlyConfig = field(default_factory=ReadOnlyConfig)


@dataclass
class BackendChoice:
    """One backend the config selects for a kind: its spec, its parsed settings, and where."""

    kind: ExtensionKind
    name: str
    spec: BackendSpec[Any]
    settings: Any
    table: dict[str, Any]
    #: The dotted key of its table (``metadata_store.fs.redis``).
    path: str
    #: The entry names of a backend of the ``entries`` form (``[auth.identity.<entry>]``),
    #: in file order; its ``settings`` are then a ``dict`` of entry name to settings.
    entries: tuple[str, ...] = ()

    def build(self) -> Any:
        """The backend, checked against its kind's protocol (a :class:`PluginError` naming
        the plugin if it does not satisfy it); not wrapped, not opened."""
        backend = self.spec.factory(self.settings)
        self.kind.check(backend, self.spec)
        if CAP_DIRECT_PUT in self.spec.capabilities and not isinstance(backend, BlobPut):
            raise PluginError(
                f"plugin distribution {self.spec.distribution or '?'!r}: {self.kind.name} "
                f"{self.spec.name!r} declares {CAP_DIRECT_PUT!r} but its "
                f"{type(backend).__qualname__} lacks put_blob; the plugin must be fixed"
            )
        return backend

    @property
    def shared(self) -> bool:
        """Whether the backend is safe for several processes or replicas: what its spec
        declares (``CAP_SHARED``), the one place core decides it."""
        return CAP_SHARED in self.spec.capabilities


@dataclass
class AngosConfig:
    server: ServerConfig
    global_: GlobalConfig
    log: LogConfig
    #: What the config selects for every declared kind, by kind name in declaration order:
    #: one backend for a kind selected singly, any number for an ``Entries`` kind.
    extensions: dict[str, tuple[BackendChoice, ...]]
    source: str = "<embedded default>"
    maintenance: MaintenanceConfig = field(default_factory=MaintenanceConfig)
    #: ``[repository."<namespace>"]`` sections by namespace (no two overlap).
    repositories: dict[str, RepositoryConfig] = field(default_factory=dict)
    #: The access policies, compiled when the config was loaded.
    policy: PolicyEngine = field(default_factory=PolicyEngine)
    #: The immutable-tag rules, compiled when the config was loaded.
    immutable_tags: TagImmutability = field(default_factory=TagImmutability)
    #: The retention policies, compiled when the config was loaded.
    retention: RetentionRules = field(default_factory=RetentionRules)
    #: ``[auth]``'s core settings, and the authenticators selected (see angos_core.auth.config).
    auth: AuthConfig = field(default_factory=AuthConfig)
    kinds: tuple[ExtensionKind, ...] = EXTENSION_KINDS
    #: ``[migration] from``: the old stores' config in a live migration (docs/operations.md).
    migration: AngosConfig | None = None

    def selected(self, kind: str) -> tuple[BackendChoice, ...]:
        return self.extensions[kind]

    def backend(self, kind: str) -> BackendChoice:
        """The backend of a kind that selects exactly one."""
        (choice,) = self.extensions[kind]
        return choice

    # Typed shortcuts for the storage kinds core code names.
    @property
    def blob_store(self) -> BackendChoice:
        return self.backend("blob_store")

    @property
    def metadata_store(self) -> BackendChoice:
        return self.backend("metadata_store")

    @property
    def lock_provider(self) -> BackendChoice:
        return self.backend("lock_provider")

    @property
    def cache(self) -> BackendChoice:
        return self.backend("cache")


#: Sections of core settings; each extension kind adds its own (``ExtensionKind.section``).
_CORE_SECTIONS = ("server", "global", "log", "maintenance", "repository", "migration")

# Loopback: a registry started without a config file is not open to the network.
DEFAULT_TOML = f"""
[server]
bind_address = "127.0.0.1"
port = 8000

[blob_store.fs]
root_dir = "{DEFAULT_ROOT_DIR}"
"""


def _single_backend(data: dict[str, Any], section: str) -> tuple[str, dict[str, Any]] | None:
    table = data.get(section)
    if table is None:
        return None
    if not isinstance(table, dict):
        raise ConfigError(section, f"expected a table such as [{section}.fs]")
    if len(table) != 1:
        names = ", ".join(sorted(table)) or "none"
        raise ConfigError(
            section,
            f"exactly one backend must be configured, found: {names}; keep one [{section}.<name>]",
        )
    ((name, settings),) = table.items()
    if not isinstance(settings, dict):
        raise ConfigError(f"{section}.{name}", f"expected a table [{section}.{name}]")
    return name, settings


def _spec(catalogue: BackendCatalogue, kind: Kind, name: str, path: str) -> BackendSpec[Any]:
    try:
        return catalogue.get(kind, name)
    except PluginError as exc:
        raise ConfigError(path, str(exc)) from None


def choose_backend(
    catalogue: BackendCatalogue,
    kind: ExtensionKind,
    name: str,
    table: dict[str, Any],
    path: str,
) -> BackendChoice:
    spec = _spec(catalogue, kind.name, name, path)
    settings = parse_table(spec.config_type, table, path)
    return BackendChoice(kind, name, spec, settings, table, path)


class _Collector:
    """Runs each independent part of the parse and keeps its errors, so that one run reports
    every problem of the file."""

    def __init__(self) -> None:
        self.errors: list[ConfigError] = []

    def attempt(self, parse: typing.Callable[[], T]) -> T | None:
        try:
            return parse()
        except ConfigError as exc:
            self.errors.extend(exc.errors)
            return None


def parse_config(
    data: dict[str, Any], catalogue: BackendCatalogue, source: str = "<config>"
) -> AngosConfig:
    """The typed configuration of ``data``; every problem found is reported at once
    (:class:`ConfigErrors` when there are several)."""
    found = _Collector()
    kind_sections = (k.section for k in catalogue.kinds if k.section is not None)
    known = (*_CORE_SECTIONS, *dict.fromkeys(kind_sections))
    for key in data:
        if key not in known:
            found.errors.append(
                ConfigError(key, f"unknown section; known sections: {', '.join(known)}")
            )

    def section(name: str, cls: type[T]) -> T:
        table = data.get(name, {})
        if not isinstance(table, dict):
            raise ConfigError(name, f"expected a table [{name}]")
        return parse_table(cls, table, name)

    server = found.attempt(lambda: section("server", ServerConfig))
    global_ = found.attempt(lambda: section("global", GlobalConfig))
    log = found.attempt(lambda: section("log", LogConfig))
    maintenance = found.attempt(lambda: section("maintenance", MaintenanceConfig))
    repositories = parse_repositories(data.get("repository", {}), found.errors)
    global_policy = global_.access_policy if global_ is not None else None
    policy = found.attempt(lambda: PolicyEngine.build(global_policy, repositories))
    immutable = None
    if global_ is not None:
        immutable = found.attempt(lambda: TagImmutability.build(global_, repositories))
    global_retention = global_.retention_policy if global_ is not None else None
    retention = found.attempt(lambda: RetentionRules.build(global_retention, repositories))
    prune_scheduled = maintenance is not None and maintenance.prune.interval_secs > 0
    if prune_scheduled and retention is not None and not retention.configured:
        found.errors.append(
            ConfigError(
                "maintenance.prune.interval_secs",
                "is set but no retention policy is configured, so nothing would be "
                "pruned: add [global.retention_policy] rules, or set it to 0",
            )
        )
    extensions = _KindsParse(data, catalogue, found).run()
    authenticators = extensions.get("authenticator", ())
    auth = found.attempt(lambda: parse_auth(data.get("auth"), authenticators))
    if server is not None and auth is not None:
        client_cas = server.tls.client_ca_bundle if server.tls is not None else None
        parsed_auth = auth
        auth = found.attempt(lambda: with_client_certificates(parsed_auth, client_cas, catalogue))

    migration = None
    if "migration" in data:
        migration = found.attempt(lambda: parse_migration(data["migration"], catalogue, source))
        if maintenance is not None and maintenance.gc.interval_secs > 0:
            found.errors.append(
                ConfigError(
                    "maintenance.gc.interval_secs",
                    "must be 0 during a live migration ([migration]): the collector would "
                    "delete what is not copied yet; collect once the migration is finished",
                )
            )

    ConfigErrors.raise_if_any(found.errors)
    assert server and global_ and log and maintenance and auth is not None
    assert policy is not None and immutable is not None and retention is not None
    return AngosConfig(
        server=server,
        global_=global_,
        log=log,
        extensions=extensions,
        source=source,
        maintenance=maintenance,
        repositories=repositories,
        policy=policy,
        immutable_tags=immutable,
        retention=retention,
        auth=auth,
        kinds=catalogue.kinds,
        migration=migration,
    )


def parse_migration(table: object, catalogue: BackendCatalogue, source: str) -> AngosConfig:
    """``[migration] from = "OLD.toml"``: the old stores a live migration reads through
    (a path relative to this config's directory). Only its storage sections are used."""
    if not isinstance(table, dict) or set(table) != {"from"} or not isinstance(table["from"], str):
        raise ConfigError(
            "migration",
            'expected one key, from = "<path of the old config>", e.g. from = "old.toml"',
        )
    path = Path(table["from"])
    if not path.is_absolute() and not source.startswith("<"):
        path = Path(source).parent / path
    if not path.is_file():
        raise ConfigError("migration.from", f"no config file {str(path)!r}")
    try:
        old = load_config(path, catalogue)
    except ConfigError as exc:
        raise ConfigError("migration.from", f"{path}: {exc}") from exc
    if old.migration is not None:
        raise ConfigError(
            "migration.from", f"{path} has a [migration] of its own: finish that one first"
        )
    return old


def parse_repositories(table: object, errors: list[ConfigError]) -> dict[str, RepositoryConfig]:
    """``[repository."<namespace>"]`` sections; a namespace is a repository-name prefix and
    no two overlap. Problems go to ``errors``; the sections without one are returned, so
    that their policies are checked in the same run."""
    if not isinstance(table, dict):
        errors.append(ConfigError("repository", 'expected tables such as [repository."team"]'))
        return {}
    errors.extend(check_namespaces(list(table)))
    parsed: dict[str, RepositoryConfig] = {}
    for namespace, settings in table.items():
        key = repository_key(namespace)
        if not isinstance(settings, dict):
            errors.append(ConfigError(key, f"expected a table [{key}]"))
            continue
        try:
            parsed[namespace] = parse_table(RepositoryConfig, settings, key)
        except ConfigError as exc:
            errors.extend(exc.errors)
    return parsed


@dataclass
class _Parsed:
    """How far the parse of a singly selected kind got, for the kinds that depend on it."""

    name: str
    #: The table its settings were parsed from (inherited settings included).
    table: dict[str, Any]
    path: str
    #: The problems reported for its backend and settings.
    errors: list[ConfigError]
    #: Its sub-tables that are not settings (they select a ``SubTable`` kind); None when its
    #: backend is unknown, so they cannot be told apart.
    children: dict[str, Any] | None


class _KindsParse:
    """The backends of every declared kind, each by its ``selection``; problems go to
    ``found``, and a kind whose selection failed gets no choice."""

    def __init__(self, data: dict[str, Any], catalogue: BackendCatalogue, found: _Collector):
        self.data = data
        self.catalogue = catalogue
        self.found = found
        self.parsed: dict[str, _Parsed] = {}

    def run(self) -> dict[str, tuple[BackendChoice, ...]]:
        chosen: dict[str, tuple[BackendChoice, ...]] = {}
        for kind in self.catalogue.kinds:
            selection = kind.selection
            if isinstance(selection, Entries):
                chosen[kind.name] = tuple(self._entries(kind, selection))
                continue
            if isinstance(selection, Single):
                choice = self._single(kind, selection)
            else:
                choice = self._sub_table(kind, selection)
            chosen[kind.name] = () if choice is None else (choice,)
        return chosen

    def _single(self, kind: ExtensionKind, selection: Single) -> BackendChoice | None:
        found, catalogue = self.found, self.catalogue
        section = selection.section
        present = found.attempt(lambda: _single_backend(self.data, section))
        if present is None and section in self.data:
            return None  # a malformed section, reported
        parent = self.parsed.get(selection.inherit or "")
        if present is not None:
            name, own = present
        elif selection.inherit is not None:
            if parent is None:
                return None  # nothing to inherit: the parent's problem is reported
            name, own = parent.name, {}
            if not catalogue.has(kind.name, name):
                # Inherited from a backend nobody provides: its own error says it all.
                if catalogue.has(selection.inherit, name) or not parent.errors:
                    found.attempt(lambda: _spec(catalogue, kind.name, name, f"{section}.{name}"))
                return None
        elif selection.default is not None:
            name, own = selection.default, {}
        else:
            found.errors.append(ConfigError(section, f"missing; {selection.missing}"))
            return None
        path = f"{section}.{name}"
        before = len(found.errors)
        spec = found.attempt(lambda: _spec(catalogue, kind.name, name, path))
        if spec is None:
            self.parsed[kind.name] = _Parsed(name, own, path, found.errors[before:], None)
            return None

        children: dict[str, Any] = {}
        if any(
            isinstance(k.selection, SubTable) and k.selection.parent == kind.name
            for k in catalogue.kinds
        ):
            # Sub-tables that are not settings of the backend select the kind below it, as
            # in [metadata_store.s3.redis].
            fields = config_fields(spec.config_type)
            children = {k: v for k, v in own.items() if isinstance(v, dict) and k not in fields}
            own = {k: v for k, v in own.items() if k not in children}
        # The same backend as the kind it inherits from: its settings, overridden by ours.
        inherits = parent is not None and parent.name == name
        table = {**parent.table, **own} if parent is not None and inherits else own
        settings_from = len(found.errors)
        settings = found.attempt(lambda: parse_table(spec.config_type, table, path))
        if parent is not None and inherits:
            # A problem of an inherited setting was reported under the parent already.
            reported = {(e.key[len(parent.path) :], e.message) for e in parent.errors}
            found.errors[settings_from:] = [
                e
                for e in found.errors[settings_from:]
                if (e.key[len(path) :], e.message) not in reported
            ]
        self.parsed[kind.name] = _Parsed(name, table, path, found.errors[before:], children)
        return None if settings is None else BackendChoice(kind, name, spec, settings, table, path)

    def _sub_table(self, kind: ExtensionKind, selection: SubTable) -> BackendChoice | None:
        found, catalogue = self.found, self.catalogue
        parent = self.parsed.get(selection.parent)
        if parent is None or parent.children is None:
            return None  # the parent's problem is reported
        tables = parent.children
        if len(tables) > 1:
            found.errors.append(
                ConfigError(
                    parent.path,
                    f"more than one {kind.title} configured: {', '.join(sorted(tables))}; keep one",
                )
            )
            return None
        if not tables:
            default = selection.default
            return found.attempt(
                lambda: choose_backend(catalogue, kind, default, {}, f"{parent.path}.{default}")
            )
        ((name, table),) = tables.items()
        path = f"{parent.path}.{name}"
        if not catalogue.has(kind.name, name):
            parent_title = catalogue.kind(selection.parent).title
            found.errors.append(
                ConfigError(
                    path,
                    f"not a setting of {parent_title} {parent.name!r} nor an installed "
                    f"{kind.title}: {catalogue.not_found(kind.name, name)}",
                )
            )
            return None
        return found.attempt(lambda: choose_backend(catalogue, kind, name, table, path))

    def _entries(self, kind: ExtensionKind, selection: Entries) -> list[BackendChoice]:
        found, catalogue = self.found, self.catalogue
        section = selection.section
        content = self.data.get(section)
        if content is None:
            return []
        sharing = [k for k in catalogue.kinds if k.several and k.section == section]
        # Problems of the section itself are reported once, by the first kind sharing it.
        first = sharing[0] is kind
        if not isinstance(content, dict):
            if first:
                found.errors.append(
                    ConfigError(section, f"expected a table such as [{section}.<name>]")
                )
            return []
        reserved = {
            r for k in sharing if isinstance(k.selection, Entries) for r in k.selection.reserved
        }
        choices: list[BackendChoice] = []
        for name, table in content.items():
            if name in reserved:
                continue
            path = f"{section}.{name}"
            owner = next((k for k in sharing if catalogue.has(k.name, name)), None)
            if owner is None:
                if first:
                    found.errors.append(
                        ConfigError(
                            path, "; ".join(catalogue.not_found(k.name, name) for k in sharing)
                        )
                    )
                continue
            if owner is not kind:
                continue
            if not isinstance(table, dict):
                found.errors.append(ConfigError(path, f"expected a table [{path}]"))
                continue
            choice = found.attempt(functools.partial(self._entry_choice, kind, name, table, path))
            if choice is not None:
                choices.append(choice)
        return choices

    def _entry_choice(
        self, kind: ExtensionKind, name: str, table: dict[str, Any], path: str
    ) -> BackendChoice:
        spec = _spec(self.catalogue, kind.name, name, path)
        if getattr(spec, "form", "table") == "table":
            settings = parse_table(spec.config_type, table, path)
            return BackendChoice(kind, name, spec, settings, table, path)
        if not table:
            raise ConfigError(path, f"no entry configured; add one or more [{path}.<name>] tables")
        errors: list[ConfigError] = []
        entries: dict[str, Any] = {}
        for entry, sub in table.items():
            where = f"{path}.{entry}"
            if not isinstance(sub, dict):
                errors.append(
                    ConfigError(
                        where,
                        f"expected a table [{where}]: each entry of {name!r} is its own "
                        f"[{path}.<name>] table",
                    )
                )
                continue
            try:
                entries[entry] = parse_table(spec.config_type, sub, where)
            except ConfigError as exc:
                errors.extend(exc.errors)
        ConfigErrors.raise_if_any(errors)
        return BackendChoice(kind, name, spec, entries, table, path, tuple(entries))


def load_toml(text: str, source: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("", f"{source} is not valid TOML: {exc}") from exc


def load_config(path: str | Path | None, catalogue: BackendCatalogue) -> AngosConfig:
    """Load ``path``; with None, ``./config.toml`` if present, else the embedded default."""
    if path is None and Path(DEFAULT_CONFIG_FILE).is_file():
        path = DEFAULT_CONFIG_FILE
    if path is None:
        return parse_config(
            load_toml(DEFAULT_TOML, "<embedded default>"), catalogue, source="<embedded default>"
        )
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise ConfigError("", f"cannot read config file {str(p)!r}: {exc.strerror}") from exc
    return parse_config(load_toml(text, str(p)), catalogue, source=str(p))


def with_server_overrides(
    config: AngosConfig,
    *,
    bind_address: str | None = None,
    port: int | None = None,
    workers: int | None = None,
) -> AngosConfig:
    """``config`` with the command line's ``--bind``/``--port``/``--workers`` applied (None:
    keep the file's value). The one place overrides are applied: everything after it, the
    startup ``config:`` line included, reads the result. Validated as the file's values are."""
    changes: dict[str, Any] = {
        key: value
        for key, value in (("bind_address", bind_address), ("port", port), ("workers", workers))
        if value is not None
    }
    if not changes:
        return config
    return dataclasses.replace(config, server=dataclasses.replace(config.server, **changes))

"""TOML configuration -> typed configuration.

The sub-table name selects the plugin::

    [blob_store.fs]             # blob store "fs"
    [metadata_store.s3]         # optional; absent -> the blob store's backend and settings
    [metadata_store.s3.redis]   # lock provider "redis"; absent -> "memory"
    [cache.redis]               # absent -> cache "memory"

Every backend declares a dataclass for its table; :func:`parse_table` fills it and refuses
unknown keys and wrong types with a :class:`ConfigError` that names the dotted key.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

from angos_core.auth.config import AuthConfig, parse_auth, with_client_certificates
from angos_core.errors import ConfigError, ConfigErrors, PluginError
from angos_core.hookspecs import CAP_SHARED, BackendSpec
from angos_core.plugins import BackendCatalogue, Kind
from angos_core.policy.engine import PolicyEngine, check_namespaces, repository_key
from angos_core.policy.immutable import TagImmutability

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
class RepositoryConfig:
    """``[repository."<namespace>"]``: settings for the repositories under a name prefix."""

    access_policy: AccessPolicyConfig | None = None
    #: Override ``[global] immutable_tags`` / ``immutable_tags_exclusions`` (None: inherit).
    immutable_tags: bool | None = None
    immutable_tags_exclusions: list[str] | None = None


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


@dataclass
class MaintenanceConfig:
    """``[maintenance]``: background work on the stores."""

    upload_purging: UploadPurgingConfig = field(default_factory=UploadPurgingConfig)


@dataclass
class BackendChoice:
    """The backend selected for one kind: its spec and its parsed settings."""

    kind: Kind
    name: str
    spec: BackendSpec[Any]
    settings: Any
    table: dict[str, Any]

    def build(self) -> Any:
        return self.spec.factory(self.settings)

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
    blob_store: BackendChoice
    metadata_store: BackendChoice
    lock_provider: BackendChoice
    cache: BackendChoice
    source: str = "<embedded default>"
    maintenance: MaintenanceConfig = field(default_factory=MaintenanceConfig)
    #: ``[repository."<namespace>"]`` sections by namespace (no two overlap).
    repositories: dict[str, RepositoryConfig] = field(default_factory=dict)
    #: The access policies, compiled when the config was loaded.
    policy: PolicyEngine = field(default_factory=PolicyEngine)
    #: The immutable-tag rules, compiled when the config was loaded.
    immutable_tags: TagImmutability = field(default_factory=TagImmutability)
    #: ``[auth]``; no authenticator configured: anonymous (see angos_core.auth.config).
    auth: AuthConfig = field(default_factory=AuthConfig)


_TOP_LEVEL = (
    "server",
    "global",
    "log",
    "maintenance",
    "repository",
    "blob_store",
    "metadata_store",
    "cache",
    "auth",
)

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


def _choose(
    catalogue: BackendCatalogue, kind: Kind, name: str, table: dict[str, Any], path: str
) -> BackendChoice:
    spec = _spec(catalogue, kind, name, path)
    settings = parse_table(spec.config_type, table, path)
    return BackendChoice(kind, name, spec, settings, table)


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
    for key in data:
        if key not in _TOP_LEVEL:
            found.errors.append(
                ConfigError(key, f"unknown section; known sections: {', '.join(_TOP_LEVEL)}")
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
    auth = found.attempt(lambda: parse_auth(data.get("auth", {}), catalogue))
    if server is not None and auth is not None:
        client_cas = server.tls.client_ca_bundle if server.tls is not None else None
        parsed_auth = auth
        auth = found.attempt(lambda: with_client_certificates(parsed_auth, client_cas, catalogue))

    blob = found.attempt(lambda: _single_backend(data, "blob_store"))
    blob_choice = None
    blob_errors: list[ConfigError] = []
    if blob is not None:
        blob_name, blob_table = blob
        before = len(found.errors)
        blob_choice = found.attempt(
            lambda: _choose(
                catalogue, "blob_store", blob_name, blob_table, f"blob_store.{blob_name}"
            )
        )
        blob_errors = found.errors[before:]
    elif "blob_store" not in data:
        found.errors.append(
            ConfigError("blob_store", "missing; add for example [blob_store.fs] root_dir = ...")
        )

    meta = found.attempt(lambda: _single_backend(data, "metadata_store"))
    meta_choice = lock_choice = None
    if meta is not None or (blob is not None and "metadata_store" not in data):
        meta_choice, lock_choice = _metadata_and_lock(found, catalogue, meta, blob, blob_errors)

    cache = found.attempt(lambda: _single_backend(data, "cache"))
    cache_choice = None
    if cache is not None or "cache" not in data:
        cache_name, cache_table = cache if cache is not None else ("memory", {})
        cache_choice = found.attempt(
            lambda: _choose(catalogue, "cache", cache_name, cache_table, f"cache.{cache_name}")
        )

    ConfigErrors.raise_if_any(found.errors)
    assert server and global_ and log and maintenance and blob_choice and meta_choice
    assert lock_choice and cache_choice and policy is not None and auth is not None
    assert immutable is not None
    return AngosConfig(
        server=server,
        global_=global_,
        log=log,
        blob_store=blob_choice,
        metadata_store=meta_choice,
        lock_provider=lock_choice,
        cache=cache_choice,
        source=source,
        maintenance=maintenance,
        repositories=repositories,
        policy=policy,
        immutable_tags=immutable,
        auth=auth,
    )


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


def _metadata_and_lock(
    found: _Collector,
    catalogue: BackendCatalogue,
    meta: tuple[str, dict[str, Any]] | None,
    blob: tuple[str, dict[str, Any]] | None,
    blob_errors: list[ConfigError],
) -> tuple[BackendChoice | None, BackendChoice | None]:
    """The metadata store (``meta``, or the blob store's backend and settings when absent) and
    the lock provider its sub-table selects; errors go to ``found``."""
    blob_name, blob_table = blob if blob is not None else ("", {})
    meta_name, meta_own = meta if meta is not None else (blob_name, {})
    meta_path = f"metadata_store.{meta_name}"
    if meta is None and not catalogue.has("metadata_store", meta_name):
        # Inherited from a blob store nobody provides: its own error says it all.
        if catalogue.has("blob_store", meta_name) or not blob_errors:
            found.attempt(lambda: _spec(catalogue, "metadata_store", meta_name, meta_path))
        return None, None
    meta_spec = found.attempt(lambda: _spec(catalogue, "metadata_store", meta_name, meta_path))
    if meta_spec is None:
        return None, None

    # Sub-tables of [metadata_store.<name>] that are not settings of the store select the
    # lock provider, as in [metadata_store.s3.redis].
    store_fields = config_fields(meta_spec.config_type)
    lock_tables = {
        k: v for k, v in meta_own.items() if isinstance(v, dict) and k not in store_fields
    }
    own_settings = {k: v for k, v in meta_own.items() if k not in lock_tables}
    # Same backend as the blob store: inherit its settings, override with our own.
    inherits = meta_name == blob_name
    meta_table = {**blob_table, **own_settings} if inherits else own_settings
    before = len(found.errors)
    settings = found.attempt(lambda: parse_table(meta_spec.config_type, meta_table, meta_path))
    if inherits:
        # A problem of an inherited setting was reported under [blob_store.<name>] already.
        blob_path = f"blob_store.{blob_name}"
        reported = {(e.key[len(blob_path) :], e.message) for e in blob_errors}
        found.errors[before:] = [
            e for e in found.errors[before:] if (e.key[len(meta_path) :], e.message) not in reported
        ]
    meta_choice = (
        None
        if settings is None
        else BackendChoice("metadata_store", meta_name, meta_spec, settings, meta_table)
    )

    if len(lock_tables) > 1:
        found.errors.append(
            ConfigError(
                meta_path,
                f"more than one lock provider configured: {', '.join(sorted(lock_tables))}; "
                "keep one",
            )
        )
        return meta_choice, None
    if not lock_tables:
        lock = found.attempt(
            lambda: _choose(catalogue, "lock_provider", "memory", {}, f"{meta_path}.memory")
        )
        return meta_choice, lock
    ((lock_name, lock_table),) = lock_tables.items()
    lock_path = f"{meta_path}.{lock_name}"
    if not catalogue.has("lock_provider", lock_name):
        found.errors.append(
            ConfigError(
                lock_path,
                f"not a setting of metadata store {meta_name!r} nor an installed lock provider: "
                f"{catalogue.not_found('lock_provider', lock_name)}",
            )
        )
        return meta_choice, None
    lock = found.attempt(
        lambda: _choose(catalogue, "lock_provider", lock_name, lock_table, lock_path)
    )
    return meta_choice, lock


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

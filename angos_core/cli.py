"""The ``angos`` command: ``serve``, ``check-config``, ``gc``, ``prune``, ``scrub``, ``migrate``,
``hash-password`` and ``policy check``."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import typing
from collections.abc import Sequence

from angos_core import __version__
from angos_core.config import (
    GC_CONCURRENCY,
    GC_MIN_AGE_SECS,
    AngosConfig,
    ByteSize,
    load_config,
    port_problem,
    with_server_overrides,
)
from angos_core.errors import AngosError, ConfigError, PluginError
from angos_core.logs import setup_logging
from angos_core.migrate.cli import add_migrate_command
from angos_core.plugins import install_hint, load_catalogue
from angos_core.registry import Registry, Stores
from angos_core.serve import check_shared_backends, describe, serve
from angos_core.tls import build_context

# Every command's code is imported when it runs (gc, prune, scrub, migrate and getpass
# below): `angos serve` is the long-lived process, and keeps none of them resident.

#: A usage error: a bad option, or a config that cannot be used (``serve``, ``gc``).
EXIT_CONFIG = 2
#: ``check-config`` found problems in the configuration.
EXIT_INVALID = 1


def _load(path: str | None) -> AngosConfig:
    return load_config(path, load_catalogue())


def cmd_serve(args: argparse.Namespace) -> int:
    def load() -> AngosConfig:
        # Also what SIGHUP reloads: the same file, the same overrides.
        return with_server_overrides(
            _load(args.config),
            bind_address=args.bind or None,
            port=args.port,
            workers=args.workers,
        )

    config = load()
    setup_logging(config.log)
    return serve(config, reload_config=load)


def cmd_check_config(args: argparse.Namespace) -> int:
    try:
        config = _load(args.config)
        check_shared_backends(config, config.server.workers)
        if config.server.tls is not None:
            build_context(config.server.tls)  # reads the PEM files, binds nothing
    except ConfigError as exc:
        for error in exc.errors:
            print(f"angos: config error: {error}", file=sys.stderr)
        return EXIT_INVALID
    read_only = "; read-only" if config.maintenance.read_only.enabled else ""
    print(
        f"config OK ({config.source}): {describe(config)}; "
        f"server {config.server.bind_address}:{config.server.port}; {config.auth.describe()}"
        f"{read_only}"
    )
    return 0


async def _gc(config: AngosConfig, args: argparse.Namespace) -> int:
    if config.migration is not None:
        raise ConfigError(
            "migration",
            "angos gc refuses a config in a live migration: it would delete what is not "
            "copied yet; finish the migration and remove [migration] first",
        )
    from angos_core.registry.gc import GarbageCollector

    stores = Stores.from_config(config)
    await stores.open()
    try:
        collector = GarbageCollector(
            Registry(stores),
            dry_run=args.dry_run,
            delete_untagged=args.delete_untagged,
            min_age_secs=args.min_age_secs,
            progress=sys.stderr,
            concurrency=args.jobs,
        )
        result = await collector.run()
    finally:
        await stores.aclose()
    print(result.summary(args.dry_run))
    return 0


def cmd_gc(args: argparse.Namespace) -> int:
    config = _load(args.config)
    if args.min_age_secs < 0:
        raise ConfigError("--min-age-secs", f"must be at least 0, got {args.min_age_secs}")
    if args.jobs < 1:
        raise ConfigError("--jobs", f"must be at least 1, got {args.jobs}")
    setup_logging(config.log)
    return asyncio.run(_gc(config, args))


async def _prune(config: AngosConfig, args: argparse.Namespace) -> int:
    from angos_core.registry.prune import Pruner

    stores = Stores.from_config(config)
    await stores.open()
    # With --json, stdout is the report alone; the lines go to stderr.
    lines = sys.stderr if args.json else sys.stdout
    try:
        pruner = Pruner(
            Registry(stores, immutable_tags=config.immutable_tags),
            config.retention,
            dry_run=args.dry_run,
            min_age_secs=args.min_age_secs,
            out=lambda line: print(line, file=lines),
        )
        result = await pruner.run()
    finally:
        await stores.aclose()
    print(result.summary(args.dry_run), file=lines)
    if args.json:
        print(json.dumps(result.as_json(args.dry_run), indent=2))
    return result.exit_code


def cmd_prune(args: argparse.Namespace) -> int:
    """Exit 0: done (or, with --dry-run, reported); 1: a repository was skipped or the run
    could not start; 2: a bad option or config."""
    config = _load(args.config)
    if args.min_age_secs < 0:
        raise ConfigError("--min-age-secs", f"must be at least 0, got {args.min_age_secs}")
    if not config.retention.configured:
        raise ConfigError(
            "global.retention_policy",
            "no retention policy is configured, so nothing would be pruned: add "
            '[global.retention_policy] or [repository."<namespace>".retention_policy] rules',
        )
    setup_logging(config.log)
    return asyncio.run(_prune(config, args))


def cmd_policy_check(args: argparse.Namespace) -> int:
    """Prints the decision; exit 0 when allowed, 1 when denied (``--table``: always 0)."""
    from angos_core.policy import explain

    config = _load(args.config)
    claims = explain.read_claims(args.claims) if args.claims else None
    identity = explain.make_identity(
        args.identity, claims, args.provider, args.common_name, args.organization
    )
    if args.table:
        if not args.repository:
            raise ConfigError("--repository", "is required with --table")
        lines = explain.table(
            config.policy,
            identity,
            args.client_ip,
            args.repository,
            args.tag,
            args.digest,
            args.source,
        )
        print("\n".join(lines))
        return 0
    if not args.action:
        raise ConfigError("--action", "is required (or --table for every action)")
    request = explain.request_for(args.action, args.repository, args.tag, args.digest, args.source)
    decision, lines = explain.check(config.policy, identity, args.client_ip, request)
    print("\n".join(lines))
    return 0 if decision.allowed else EXIT_INVALID


def _add_policy(sub: typing.Any) -> None:
    policy = sub.add_parser("policy", help="ask the access policy what it decides")
    policy_sub = policy.add_subparsers(dest="policy_command", required=True)
    check = policy_sub.add_parser(
        "check",
        help="print allow or deny and the rule that decided (exit 1 on deny)",
        description="Without --identity, --claims or a certificate the request is anonymous.",
    )
    check.add_argument("-c", "--config", help="TOML config whose policies to ask")
    check.add_argument("--identity", help="a Basic user name (with --claims: the username)")
    check.add_argument("--claims", help="a JSON file of OIDC claims: an OIDC identity")
    check.add_argument("--provider", help="with --claims: the NAME of [auth.oidc.NAME]")
    check.add_argument("--common-name", action="append", default=[], help="client certificate CN")
    check.add_argument("--organization", action="append", default=[], help="certificate O")
    check.add_argument("--client-ip", default="127.0.0.1", help="identity.client_ip")
    check.add_argument("--action", help="e.g. put-manifest (see docs/access-policies.md)")
    check.add_argument("--repository", help="the repository, e.g. team/app")
    check.add_argument("--tag", help="the tag pushed or pulled")
    check.add_argument("--digest", help="the blob or manifest digest")
    check.add_argument("--from", dest="source", help="a mount's source repository")
    check.add_argument("--table", action="store_true", help="every action on --repository")
    check.set_defaults(func=cmd_policy_check)


def _read_password() -> str:
    """From a prompt, asked twice, on a terminal; else stdin, less one final newline. Never
    from argv: a command line is visible to every user of the machine and kept in history."""
    if sys.stdin.isatty():
        import getpass

        password = getpass.getpass("Password: ")
        if getpass.getpass("Repeat password: ") != password:
            raise ValueError("the passwords differ; nothing was hashed")
    else:
        password = sys.stdin.read()
        password = password.removesuffix("\n").removesuffix("\r")
        if "\n" in password:
            raise ValueError("stdin holds more than one line; give the password alone")
    if not password:
        raise ValueError("the password is empty")
    return password


def cmd_hash_password(args: argparse.Namespace) -> int:
    if args.password is not None:
        print(
            "angos: hash-password takes no password argument (a command line shows in ps and "
            "in shell history): type it at the prompt, or pipe it on stdin",
            file=sys.stderr,
        )
        return EXIT_CONFIG
    try:
        # The hashes are the angos-auth-basic plugin's: core carries no hashing library.
        from angos_auth_basic.hashing import hash_password
    except ImportError:
        print(
            "angos: hash-password needs the angos-auth-basic plugin, which is not installed; "
            + install_hint("authenticator", "identity"),
            file=sys.stderr,
        )
        return EXIT_CONFIG
    try:
        encoded = hash_password(_read_password(), scheme="bcrypt" if args.bcrypt else "argon2id")
    except ValueError as exc:
        print(f"angos: hash-password: {exc}", file=sys.stderr)
        return 1
    print(encoded)
    return 0


async def _scrub(config: AngosConfig, args: argparse.Namespace) -> int:
    from angos_core.registry.scrub import Scrubber

    stores = Stores.from_config(config)
    await stores.open()
    # With --json, stdout is the report alone; the lines go to stderr.
    lines = sys.stderr if args.json else sys.stdout
    try:
        scrubber = Scrubber(
            Registry(stores),
            repair=args.repair,
            dry_run=args.dry_run,
            rate_limit=args.rate_limit,
            out=lambda line: print(line, file=lines),
        )
        report = await scrubber.run()
    finally:
        await stores.aclose()
    print(report.summary(), file=lines)
    if args.json:
        print(json.dumps(report.as_json(), indent=2))
    return report.exit_code


def cmd_scrub(args: argparse.Namespace) -> int:
    config = _load(args.config)
    if args.dry_run and not args.repair:
        raise ConfigError("--dry-run", "only applies with --repair (a scrub alone changes nothing)")
    setup_logging(config.log)
    return asyncio.run(_scrub(config, args))


def _rate(text: str) -> int:
    try:
        rate = int(ByteSize.parse(text, "--rate-limit"))
    except ConfigError:
        rate = 0
    if rate < 1:
        raise argparse.ArgumentTypeError(
            f"expected bytes per second (e.g. 50MiB), at least 1, got {text!r}"
        )
    return rate


class _Parser(argparse.ArgumentParser):
    """Usage errors in one line (argparse prints the whole usage first), exit 2."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(EXIT_CONFIG, f"{self.prog}: {message} (see {self.prog} --help)\n")


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(port_problem(port))
    return port


def _workers(text: str) -> int:
    try:
        workers = int(text)
    except ValueError:
        workers = 0
    if workers < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, got {text!r}")
    return workers


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="angos", description="Angos OCI registry")
    parser.add_argument("--version", action="version", version=f"angos {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    serve_cmd = sub.add_parser("serve", help="run the registry")
    serve_cmd.add_argument(
        "-c",
        "--config",
        help="TOML config (default: ./config.toml if "
        "present, else the embedded default: fs in ./registry-data, port 8000)",
    )
    serve_cmd.add_argument("--bind", help="address to listen on (overrides server.bind_address)")
    serve_cmd.add_argument(
        "--port", type=_port, help="port to listen on, 0 for any free port (overrides server.port)"
    )
    serve_cmd.add_argument(
        "--workers",
        type=_workers,
        help="processes serving the port with SO_REUSEPORT (overrides server.workers); "
        "more than 1 needs a shared lock provider and cache",
    )
    serve_cmd.set_defaults(func=cmd_serve)

    check = sub.add_parser("check-config", help="validate a config file without serving")
    check.add_argument("-c", "--config", help="TOML config to check")
    check.set_defaults(func=cmd_check_config)

    gc = sub.add_parser(
        "gc",
        help="delete blobs no manifest references (safe while the registry serves pushes)",
    )
    gc.add_argument("-c", "--config", help="TOML config of the registry's stores")
    gc.add_argument(
        "--dry-run", action="store_true", help="print what would be deleted, delete nothing"
    )
    gc.add_argument(
        "--delete-untagged",
        action="store_true",
        help="first delete manifests no tag keeps (see docs/operations.md)",
    )
    gc.add_argument(
        "--min-age-secs",
        type=int,
        default=GC_MIN_AGE_SECS,
        help=f"keep unreferenced blobs written less than this long ago (default {GC_MIN_AGE_SECS})",
    )
    gc.add_argument(
        "-j",
        "--jobs",
        type=int,
        default=GC_CONCURRENCY,
        help=f"repositories or objects to work on at once (default {GC_CONCURRENCY})",
    )
    gc.set_defaults(func=cmd_gc)

    prune = sub.add_parser(
        "prune",
        help="untag and delete the manifests no retention rule keeps (safe beside pushes; "
        "the blobs go at the next gc)",
    )
    prune.add_argument("-c", "--config", help="TOML config of the stores and the policies")
    prune.add_argument("--dry-run", action="store_true", help="print what would go, change nothing")
    prune.add_argument("--json", action="store_true", help="print a JSON report on stdout")
    prune.add_argument(
        "--min-age-secs",
        type=int,
        default=GC_MIN_AGE_SECS,
        help="never prune a manifest pushed less than this long before the run "
        f"(default {GC_MIN_AGE_SECS})",
    )
    prune.set_defaults(func=cmd_prune)

    scrub = sub.add_parser(
        "scrub", help="check every blob, link, manifest and tag; repair what can be derived"
    )
    scrub.add_argument("-c", "--config", help="TOML config of the registry's stores")
    scrub.add_argument(
        "--repair", action="store_true", help="repair what can be derived (docs/operations.md)"
    )
    scrub.add_argument(
        "--dry-run", action="store_true", help="with --repair: print what would be repaired"
    )
    scrub.add_argument("--json", action="store_true", help="print a JSON report on stdout")
    scrub.add_argument(
        "--rate-limit",
        type=_rate,
        metavar="BYTES_PER_SEC",
        help="hash blobs at most this fast (e.g. 50MiB; default unlimited)",
    )
    scrub.set_defaults(func=cmd_scrub)

    hash_cmd = sub.add_parser(
        "hash-password",
        help="print an Argon2id hash for [auth.identity.<name>] password (the password is "
        "read from a prompt, or from stdin when it is not a terminal)",
    )
    hash_cmd.add_argument(
        "--bcrypt",
        action="store_true",
        help="a bcrypt hash instead, for an htpasswd file (user:hash)",
    )
    # Only to refuse it with the reason (argparse would say "unrecognized arguments").
    hash_cmd.add_argument("password", nargs="?", help=argparse.SUPPRESS)
    hash_cmd.set_defaults(func=cmd_hash_password)
    _add_policy(sub)
    add_migrate_command(sub, _load)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
        return code
    except ConfigError as exc:
        for error in exc.errors:
            print(f"angos: config error: {error}", file=sys.stderr)
        return EXIT_CONFIG
    except PluginError as exc:
        print(f"angos: plugin error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except AngosError as exc:
        print(f"angos: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

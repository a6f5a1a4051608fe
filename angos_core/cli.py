"""The ``angos`` command: ``serve``, ``check-config``, ``gc`` and ``migrate``."""

from __future__ import annotations

import argparse
import asyncio
import sys
import typing
from collections.abc import Sequence

from angos_core import __version__
from angos_core.config import AngosConfig, load_config, port_problem, with_server_overrides
from angos_core.errors import AngosError, ConfigError, PluginError
from angos_core.logs import setup_logging
from angos_core.migrate.cli import add_migrate_command
from angos_core.plugins import load_catalogue
from angos_core.registry import Registry, Stores
from angos_core.registry.gc import DEFAULT_MIN_AGE_SECS, GarbageCollector
from angos_core.serve import check_shared_backends, describe, serve

#: A usage error: a bad option, or a config that cannot be used (``serve``, ``gc``).
EXIT_CONFIG = 2
#: ``check-config`` found problems in the configuration.
EXIT_INVALID = 1


def _load(path: str | None) -> AngosConfig:
    return load_config(path, load_catalogue())


def cmd_serve(args: argparse.Namespace) -> int:
    config = with_server_overrides(
        _load(args.config), bind_address=args.bind or None, port=args.port, workers=args.workers
    )
    setup_logging(config.log)
    return serve(config)


def cmd_check_config(args: argparse.Namespace) -> int:
    try:
        config = _load(args.config)
        check_shared_backends(config, config.server.workers)
    except ConfigError as exc:
        for error in exc.errors:
            print(f"angos: config error: {error}", file=sys.stderr)
        return EXIT_INVALID
    print(
        f"config OK ({config.source}): {describe(config)}; "
        f"server {config.server.bind_address}:{config.server.port}; {config.auth.describe()}"
    )
    return 0


async def _gc(config: AngosConfig, args: argparse.Namespace) -> int:
    stores = Stores.from_config(config)
    await stores.open()
    try:
        collector = GarbageCollector(
            Registry(stores),
            dry_run=args.dry_run,
            delete_untagged=args.delete_untagged,
            min_age_secs=args.min_age_secs,
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
    setup_logging(config.log)
    return asyncio.run(_gc(config, args))


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
        help="delete blobs no manifest references (offline: no pushes while it runs)",
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
        default=DEFAULT_MIN_AGE_SECS,
        help=f"keep unreferenced blobs written less than this long ago "
        f"(default {DEFAULT_MIN_AGE_SECS})",
    )
    gc.set_defaults(func=cmd_gc)

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

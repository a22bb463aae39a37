"""The ``gateway`` command: run, check a configuration, hash a password."""
from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import sys
from pathlib import Path

from aiohttp import web

from .app import create_app
from .config import ConfigError, GatewayConfig, load_config
from .routing import shadowed_routes
from .users import UserDirectory, hash_password, load_users

__all__ = ["main"]

DEFAULT_CONFIG = "config/example.yaml"
EXAMPLE_UPSTREAM_PORT = 9001
log = logging.getLogger("gateway")


def load_all(path: str | Path) -> tuple[GatewayConfig, UserDirectory]:
    """Config and users file, or ConfigError with every problem of both."""
    config = load_config(path)
    return config, load_users(config.users_file)


def load_or_report(path: str) -> tuple[GatewayConfig, UserDirectory] | None:
    """Config and users, or None after printing every problem to stderr."""
    try:
        return load_all(path)
    except ConfigError as exc:
        print(f"{path}: {len(exc.problems)} problem(s), the gateway will not start:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return None


def cmd_check(args: argparse.Namespace) -> int:
    loaded = load_or_report(args.config)
    if loaded is None:
        return 1
    config, users = loaded
    for warning in shadowed_routes(config.routes):
        print(f"warning: {warning}", file=sys.stderr)
    print(f"{args.config}: OK ({len(config.routes)} routes, {len(users)} users, store {config.store.backend})")
    return 0


async def _serve(app: web.Application, config: GatewayConfig, example_upstream: bool) -> None:
    runners = []
    if example_upstream:
        from .example_upstream import create_upstream

        upstream = web.AppRunner(create_upstream(), access_log=None)
        await upstream.setup()
        await web.TCPSite(upstream, "127.0.0.1", EXAMPLE_UPSTREAM_PORT).start()
        runners.append(upstream)
        log.info("example upstream on http://127.0.0.1:%d", EXAMPLE_UPSTREAM_PORT)
    runner = web.AppRunner(app, access_log=None, handle_signals=True)
    await runner.setup()
    await web.TCPSite(runner, config.listen.host, config.listen.port).start()
    runners.insert(0, runner)
    log.info("gateway listening on http://%s:%d", config.listen.host, config.listen.port)
    try:
        await asyncio.Event().wait()
    finally:
        for r in runners:
            await r.cleanup()


def cmd_run(args: argparse.Namespace) -> int:
    loaded = load_or_report(args.config)
    if loaded is None:
        return 1
    config, users = loaded
    app = create_app(config, users=users)
    try:
        asyncio.run(_serve(app, config, args.example_upstream))
    except KeyboardInterrupt:
        pass
    return 0


def cmd_hash_password(args: argparse.Namespace) -> int:
    if sys.stdin.isatty():
        password = getpass.getpass("Password: ")
        if password != getpass.getpass("Again: "):
            print("The passwords differ.", file=sys.stderr)
            return 1
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        print("An empty password cannot be hashed.", file=sys.stderr)
        return 1
    print(hash_password(password))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gateway", description="JWT authentication gateway")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the gateway")
    run.add_argument("--config", default=DEFAULT_CONFIG, help=f"YAML configuration (default {DEFAULT_CONFIG})")
    run.add_argument("--example-upstream", action="store_true", help=f"also serve the example upstream on 127.0.0.1:{EXAMPLE_UPSTREAM_PORT}")
    run.add_argument("--log-level", default="INFO")
    run.set_defaults(func=cmd_run)
    check = sub.add_parser("check", help="validate a configuration and its users file")
    check.add_argument("config")
    check.set_defaults(func=cmd_check)
    hashpw = sub.add_parser("hash-password", help="read a password (prompt or stdin), print its argon2id hash")
    hashpw.set_defaults(func=cmd_hash_password)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=getattr(args, "log_level", "INFO"), format="%(message)s", stream=sys.stderr)
    sys.exit(args.func(args))

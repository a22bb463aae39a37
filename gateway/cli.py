"""The ``gateway`` command: run, check a configuration, hash a password, generate a signing key."""
from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import os
import sys
import unicodedata
from pathlib import Path

from aiohttp import web

from .app import create_app
from .config import SIGNING_ALGORITHMS, ConfigError, GatewayConfig, load_config
from .keys import KeyRing, generate_key
from .routing import shadowed_routes
from .users import UserDirectory, hash_password, load_users

__all__ = ["main"]

DEFAULT_CONFIG = "config/example.yaml"
EXAMPLE_UPSTREAM_PORT = 9001
log = logging.getLogger("gateway")


def load_all(path: str | Path) -> tuple[GatewayConfig, UserDirectory]:
    """Config and users file, or ConfigError with every problem of both."""
    config = load_config(path)
    problems: list[str] = []
    try:
        KeyRing.from_config(config.tokens)  # key files and variables are read now, not at the first login
    except ConfigError as exc:
        problems += exc.problems
    try:
        users = load_users(config.users_file)
    except ConfigError as exc:
        raise ConfigError(problems + exc.problems) from None
    if problems:
        raise ConfigError(problems)
    return config, users


def confusable_users(users: UserDirectory) -> list[str]:
    """Warnings for usernames that are not NFKC-stable or that collide with another once normalised.

    Logins are compared exactly, so these cannot log in as each other, but an
    operator reading headers or logs could mistake one for the other.
    """
    warnings, seen = [], {}
    for name in users.names():
        folded = unicodedata.normalize("NFKC", name).casefold()
        if unicodedata.normalize("NFKC", name) != name:
            warnings.append(f"user {name!r}: not in NFKC form; it logs in only exactly as written")
        if folded in seen:
            warnings.append(f"user {name!r}: looks like user {seen[folded]!r} (same after NFKC + case folding)")
        seen.setdefault(folded, name)
    return warnings


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
    for warning in shadowed_routes(config.routes) + confusable_users(users):
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


def cmd_keys_generate(args: argparse.Namespace) -> int:
    """Write a new key (private part 0600) and print the ``tokens.keys`` entry that uses it."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    kid, private, public = generate_key(args.alg)
    kid = args.kid or kid
    if args.alg == "HS256":
        files = {"secret_file": out / f"{kid}.secret"}
        contents = {"secret_file": private}
    else:
        files = {"private_key_file": out / f"{kid}.key.pem", "public_key_file": out / f"{kid}.pub.pem"}
        contents = {"private_key_file": private, "public_key_file": public}
    existing = [str(f) for f in files.values() if f.exists()]
    if existing:
        print(f"refusing to overwrite {', '.join(existing)}", file=sys.stderr)
        return 1
    for field, path in files.items():
        mode = 0o644 if field == "public_key_file" else 0o600
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(contents[field] or b"")
    print("# add under tokens.keys (a relative path there is relative to the config file):")
    print(f"- kid: {kid}\n  algorithm: {args.alg}")
    main_file = "secret_file" if args.alg == "HS256" else "private_key_file"
    print(f"  {main_file}: {files[main_file].resolve()}")
    print("  active: false   # make it active once every instance has it")
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
    keys = sub.add_parser("keys", help="signing keys").add_subparsers(dest="keys_command", required=True)
    generate = keys.add_parser("generate", help="write a new key pair (or HS256 secret) named by its kid")
    generate.add_argument("--alg", choices=SIGNING_ALGORITHMS, default="ES256")
    generate.add_argument("--out", required=True, help="directory for the key files")
    generate.add_argument("--kid", help="key id (default: the RFC 7638 thumbprint)")
    generate.set_defaults(func=cmd_keys_generate)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=getattr(args, "log_level", "INFO"), format="%(message)s", stream=sys.stderr)
    sys.exit(args.func(args))

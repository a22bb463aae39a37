"""The ``gateway`` command: run, check a configuration, hash a password, generate a signing key."""
from __future__ import annotations

import argparse
import getpass
import logging
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.check import cmd_check, load_or_report

if TYPE_CHECKING:  # the commands import what they use: `gateway --help` loads no server, no pydantic
    from gateway.config import GatewayConfig

__all__ = ["main"]

DEFAULT_CONFIG = "config/example.yaml"
WORKERS_ENV = "GATEWAY_WORKERS"
log = logging.getLogger("gateway")


EXAMPLE_UPSTREAM_PORT = 9001  # `run --example-upstream` serves it here unless --example-upstream-port says otherwise


def worker_count(args: argparse.Namespace, config: GatewayConfig) -> int:
    """--workers, else $GATEWAY_WORKERS, else one per CPU; always 1 with the per-process memory store."""
    from gateway.config import ConfigError
    from gateway.server.workers import available_cpus

    given = args.workers if args.workers is not None else os.environ.get(WORKERS_ENV)
    if given is None:
        return available_cpus() if config.store.backend == "redis" else 1
    count = int(given)
    if count < 1:
        raise ConfigError([f"--workers: must be at least 1 (got {count})"])
    if count > 1 and config.store.backend == "memory":
        raise ConfigError(["--workers: the memory store lives in one process; use store.backend: redis for more workers"])
    return count


def cmd_run(args: argparse.Namespace) -> int:
    from gateway.config import ConfigError
    from gateway.server.listeners import ServeOptions, run, serve

    loaded = load_or_report(args.config)
    if loaded is None:
        return 1
    config, users = loaded
    try:
        workers = 1 if args.worker_of is not None else worker_count(args, config)
    except (ConfigError, ValueError) as exc:
        problems = exc.problems if isinstance(exc, ConfigError) else [f"--workers: {exc}"]
        print(f"{args.config}: " + "; ".join(problems), file=sys.stderr)
        return 1
    if workers > 1:
        return _supervise(args, config, workers)
    options = ServeOptions(
        config_path=Path(args.config),
        pid_file=Path(args.pid_file) if args.pid_file and args.worker_of is None else None,
        reuse_port=args.worker_of is not None,
        parent_pid=args.worker_of,
        example_upstream=args.example_upstream_port if args.example_upstream else None,
    )
    try:
        run(serve(config, users, options))
    except KeyboardInterrupt:
        pass
    except OSError as exc:  # e.g. the port is taken
        print(f"gateway: cannot serve: {exc}", file=sys.stderr)
        return 1
    return 0


def _supervise(args: argparse.Namespace, config: GatewayConfig, workers: int) -> int:
    from gateway.config import ConfigError, load_config
    from gateway.server.listeners import CANCEL_GRACE, remove_pid_file, run, write_pid_file
    from gateway.server.workers import Supervisor

    def command(slot: int) -> list[str]:
        line = [sys.executable, "-m", "gateway", "run", "--config", args.config, "--log-level", args.log_level,
                "--log-format", args.log_format, "--worker-of", str(os.getpid())]
        if args.example_upstream and slot == 0:
            line += ["--example-upstream", "--example-upstream-port", str(args.example_upstream_port)]
        return line

    def stop_timeout() -> float:
        """The longest drain a worker may run: by the config at start or the file now (a reload may have raised it)."""
        limits = [config.shutdown]
        try:
            limits.append(load_config(args.config).shutdown)
        except ConfigError:
            pass
        return max(s.readiness_delay + s.drain_timeout for s in limits) + CANCEL_GRACE + 5

    pid_file = Path(args.pid_file) if args.pid_file else None
    if pid_file:
        write_pid_file(pid_file)
    try:
        return run(Supervisor(workers, command, stop_timeout).run())
    finally:
        if pid_file:
            remove_pid_file(pid_file)


def cmd_reload(args: argparse.Namespace) -> int:
    """Signal a running gateway (or its supervisor) to reload; with --config, only if the file is valid."""
    if args.config and load_or_report(args.config, "not reloading") is None:
        return 1
    try:
        pid = int(Path(args.pid_file).read_text().strip())
        if not is_gateway_process(pid):
            print(f"gateway reload: process {pid} of {args.pid_file} is not a running gateway (a stale pid file?); "
                  "nothing was signalled", file=sys.stderr)
            return 1
        os.kill(pid, signal.SIGHUP)
    except (OSError, ValueError) as exc:
        print(f"gateway reload: cannot signal the process of {args.pid_file}: {exc}", file=sys.stderr)
        return 1
    print(f"sent SIGHUP to {pid}; the gateway logs the outcome")
    return 0


def is_gateway_process(pid: int) -> bool:
    """Whether ``pid`` runs ``gateway run`` (``gateway run ...`` or ``python -m gateway run ...``), read from /proc.

    A pid file outlives a crashed gateway, and its pid may since belong to any
    other process: SIGHUP ends most programs.
    """
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    names = [os.path.basename(arg.decode(errors="replace")) for arg in argv]
    return "run" in names and any(name == "gateway" for name in names[: names.index("run")])


def cmd_hash_password(args: argparse.Namespace) -> int:
    from gateway.sources.users import hash_password

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
    from gateway.auth.keys import generate_key

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    kid, private, public = generate_key(args.alg)
    kid = args.kid or kid
    if args.alg == "HS256":
        files = {"secret_file": out / f"{kid}.secret"}
        contents: dict[str, bytes | None] = {"secret_file": private}
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


def cmd_decision_config(args: argparse.Namespace) -> int:
    from gateway.decision.configs import command

    return command(args)


def cmd_decision_check(args: argparse.Namespace) -> int:
    from gateway.decision.probe import command

    return command(args)


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class _Version(argparse.Action):
    """``--version``: the installed distribution's version, looked up only when asked (not on every start)."""

    def __call__(self, parser: argparse.ArgumentParser, *_: object) -> None:
        from importlib.metadata import PackageNotFoundError, version

        try:
            found = version("jwt-gateway")
        except PackageNotFoundError:  # a source tree that was never installed
            found = "unknown (not installed)"
        print(f"gateway {found}")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    from gateway.algorithms import SIGNING_ALGORITHMS

    parser = argparse.ArgumentParser(prog="gateway", description="JWT authentication gateway")
    parser.add_argument("--version", action=_Version, nargs=0, help="print the version and exit")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the gateway")
    run.add_argument("--config", default=DEFAULT_CONFIG, help=f"YAML configuration (default {DEFAULT_CONFIG})")
    run.add_argument("--example-upstream", action="store_true", help="also serve the example upstream on 127.0.0.1")
    run.add_argument("--example-upstream-port", type=int, default=EXAMPLE_UPSTREAM_PORT,
                     help=f"its port (default {EXAMPLE_UPSTREAM_PORT}, the one config/example.yaml routes to)")
    run.add_argument("--log-level", default="INFO", type=str.upper, choices=LOG_LEVELS,
                     help="DEBUG, INFO (default), WARNING, ERROR or CRITICAL")
    run.add_argument("--log-format", choices=["text", "json"], default=os.environ.get("GATEWAY_LOG_FORMAT", "text"),
                     help="json: every log line a JSON object (access lines always are); default $GATEWAY_LOG_FORMAT or text")
    run.add_argument("--workers", type=int, default=None,
                     help=f"serving processes sharing the port (default ${WORKERS_ENV}, else one per CPU with "
                          "the redis store, 1 with the memory store)")
    run.add_argument("--pid-file", help="write the pid here (of the supervisor with --workers > 1), for `gateway reload`")
    run.add_argument("--worker-of", type=int, default=None, help=argparse.SUPPRESS)
    run.set_defaults(func=cmd_run)
    reload = sub.add_parser("reload", help="make a running gateway re-read its configuration (SIGHUP)")
    reload.add_argument("--pid-file", required=True, help="the file given to `gateway run --pid-file`")
    reload.add_argument("--config", help="validate this file first and do not signal if it has problems")
    reload.set_defaults(func=cmd_reload)
    check = sub.add_parser("check", help="validate a configuration and its users file")
    check.add_argument("config")
    check.add_argument("--probe", action="store_true", help="also connect to every user source and run its query once")
    check.set_defaults(func=cmd_check)
    hashpw = sub.add_parser("hash-password", help="read a password (prompt or stdin), print its argon2id hash")
    hashpw.set_defaults(func=cmd_hash_password)
    keys = sub.add_parser("keys", help="signing keys").add_subparsers(dest="keys_command", required=True)
    generate = keys.add_parser("generate", help="write a new key pair (or HS256 secret) named by its kid")
    generate.add_argument("--alg", choices=SIGNING_ALGORITHMS, default="ES256")
    generate.add_argument("--out", required=True, help="directory for the key files")
    generate.add_argument("--kid", help="key id (default: the RFC 7638 thumbprint)")
    generate.set_defaults(func=cmd_keys_generate)
    from gateway.admin.client import add_commands  # the admin API's client: no server, no aiohttp

    add_commands(sub, DEFAULT_CONFIG)
    front = sub.add_parser("decision-config", help="print a front proxy's decision-mode config for this gateway config")
    front.add_argument("front", help="the front proxy: nginx, caddy, traefik, haproxy or envoy")
    front.add_argument("--config", default=DEFAULT_CONFIG, help=f"YAML configuration (default {DEFAULT_CONFIG})")
    front.add_argument("--listen", help="host:port the front proxy listens on (default 0.0.0.0:80)")
    front.add_argument("--gateway", help="host:port of the gateway (default 127.0.0.1:8080)")
    front.add_argument("--app", help="host:port of the app (default 127.0.0.1:8000)")
    front.add_argument("--state-dir", help="nginx: the decision cache's directory (default /run/nginx-gateway-decisions); "
                       "haproxy: where gateway-auth.lua is loaded from (default /etc/haproxy)")
    front.add_argument("--front-cache", action="store_true",
                       help="nginx: also cache decisions in nginx (what that gives up: docs/decision-mode.md)")
    front.add_argument("--out", help="write the files into this directory (default: print them)")
    front.set_defaults(func=cmd_decision_config)
    probe = sub.add_parser("decision-check", help="replay hostile requests through a running front proxy and report "
                                                  "what reached the app (exit 1 if anything did)")
    probe.add_argument("url", help="the front proxy, e.g. http://127.0.0.1:80")
    probe.add_argument("--route", default="/", help="send the requests under this route prefix (default /)")
    probe.add_argument("--echo-path", help="a path of the real app that echoes what it received as JSON (default: "
                                           "the example upstream runs where the app is and echoes every path)")
    probe.add_argument("--token", help="a valid access token for the route (adds the credential rows)")
    probe.add_argument("--cookie", help="a Cookie header with a valid access cookie (adds cross-site websocket rows)")
    probe.add_argument("--identity-header", action="append", metavar="NAME",
                       help="a header your routes inject, repeatable (default X-User-Id, X-User-Roles, X-User-Email, "
                            "X-Gateway-Identity)")
    probe.add_argument("--identity-prefix", action="append", metavar="PREFIX",
                       help="an identity header family (identity_header_prefixes), repeatable (default X-User-, X-Auth-)")
    probe.add_argument("--websocket", metavar="PATH",
                       help="a path of a websocket route: with --cookie, the cross-site handshakes go there")
    probe.add_argument("--timeout", type=float, default=10.0, help="seconds per request (default 10)")
    probe.set_defaults(func=cmd_decision_check)
    return parser


def main(argv: list[str] | None = None) -> None:
    from gateway.observe.logs import configure_logging

    args = build_parser().parse_args(argv)
    configure_logging(getattr(args, "log_level", "INFO"), getattr(args, "log_format", "text"))
    sys.exit(args.func(args))

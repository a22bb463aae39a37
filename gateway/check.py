"""The configuration as ``gateway run`` and ``gateway check`` load it, and the check's own report.

``load_all`` reads the configuration and everything it names (keys, user sources, the providers' secrets, the
admin keys) at once and raises one ``ConfigError`` listing every problem; ``cmd_check`` adds the warnings (routes
shadowed, names that look alike, trust settings, second-factor requirements) and, with ``--probe``, connects to
every user source and to Redis. Heavy modules are imported inside the functions: ``gateway --help`` loads none.
"""
from __future__ import annotations

import argparse
import sys
import unicodedata
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gateway.config import GatewayConfig
    from gateway.sources.chain import UserChain

__all__ = ["cmd_check", "confusable_users", "load_all", "load_or_report", "subject_collisions"]


def load_all(path: str | Path) -> tuple[GatewayConfig, UserChain]:
    """Config and its user sources (files read), or ConfigError with every problem of both."""
    from gateway.auth.keys import KeyRing
    from gateway.config import ConfigError, load_config
    from gateway.sources.registry import build_chain

    config = load_config(path)
    problems: list[str] = []
    try:
        KeyRing.from_config(config.tokens)  # key files and variables are read now, not at the first login
    except ConfigError as exc:
        problems += exc.problems
    try:
        users = build_chain(config)
    except ConfigError as exc:
        raise ConfigError(problems + exc.problems) from None
    if config.oidc.enabled:
        from gateway.auth.oidc_flow import SignInFlow

        try:
            SignInFlow(config)  # the providers' secret and key files are read now too
        except ConfigError as exc:
            problems += exc.problems
    try:
        from gateway.auth.admin_keys import AdminKeys

        AdminKeys.from_config(config.admin)  # admin.keys_file is read now too
    except ConfigError as exc:
        problems += exc.problems
    problems += subject_collisions(config, users)
    if problems:
        raise ConfigError(problems)
    return config, users


def subject_collisions(config: GatewayConfig, users: UserChain) -> list[str]:
    """Local users whose name lies in an external issuer's subject namespace could pass for its users."""
    problems = []
    for name, issuer in config.external_issuers.items():
        prefix = issuer.prefix_for(name)
        problems += [
            f"user {user!r}: starts with external_issuers.{name}'s subject prefix {prefix!r}; rename the user "
            f"or set external_issuers.{name}.subject_prefix"
            for user in users.names() if prefix and user.startswith(prefix)
        ]
    return problems


def confusable_users(users: UserChain) -> list[str]:
    """Warnings for usernames that are not NFKC-stable or that collide with another once normalised.

    Logins are compared exactly, so these cannot log in as each other, but an
    operator reading headers or logs could mistake one for the other.
    """
    warnings: list[str] = []
    seen: dict[str, str] = {}
    for name in users.names():
        folded = unicodedata.normalize("NFKC", name).casefold()
        if unicodedata.normalize("NFKC", name) != name:
            warnings.append(f"user {name!r}: not in NFKC form; it logs in only exactly as written")
        if folded in seen:
            warnings.append(f"user {name!r}: looks like user {seen[folded]!r} (same after NFKC + case folding)")
        seen.setdefault(folded, name)
    return warnings


def load_or_report(path: str, outcome: str = "the gateway will not start") -> tuple[GatewayConfig, UserChain] | None:
    """Config and users, or None after printing every problem to stderr (and what they stop: ``outcome``)."""
    from gateway.config import ConfigError

    try:
        return load_all(path)
    except ConfigError as exc:
        print(f"{path}: {len(exc.problems)} problem(s), {outcome}:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return None


def cmd_check(args: argparse.Namespace) -> int:
    from gateway.routing import host_fallthrough, shadowed_routes

    loaded = load_or_report(args.config)
    if loaded is None:
        return 1
    config, users = loaded
    trust = []
    if config.trust_forwarded_headers and not config.trusted_proxies:
        trust.append(
            "trust_forwarded_headers: every peer may set the client address, scheme and host it reports; "
            "list your load balancers in trusted_proxies instead (docs/operations.md#behind-a-load-balancer)"
        )
    from gateway.factors.checks import provider_level_warnings, second_factor_warnings

    trust += second_factor_warnings(config) + provider_level_warnings(config)
    for warning in shadowed_routes(config.routes) + host_fallthrough(config.routes) + confusable_users(users) + trust:
        print(f"warning: {warning}", file=sys.stderr)
    sources = "" if config.users is None else f", {_count(len(users.sources), 'user source')}"
    print(f"{args.config}: OK ({_count(len(config.routes), 'route')}, {_count(len(users), 'user')}{sources}, "
          f"store {config.store.backend})")
    if args.probe:
        from gateway.server.listeners import run

        return run(_probe(config, users))
    return 0


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


async def _probe(config: GatewayConfig, users: UserChain) -> int:
    """Connect to every source and run its query or search once, and to Redis; 1 if any cannot."""
    import asyncio

    failed = 0 if config.store.backend != "redis" else await _probe_store(config)
    try:
        for source in users.sources:
            try:
                outcome = await asyncio.wait_for(source.probe(), source.timeout)
            except Exception as exc:  # noqa: BLE001 - reported, whatever it is
                failed += 1
                print(f"probe {source.name}: FAILED ({type(exc).__name__}: {str(exc)[:200]})", file=sys.stderr)
            else:
                print(f"probe {source.name}: OK ({outcome})")
    finally:
        await users.close()
    return 1 if failed else 0


async def _probe_store(config: GatewayConfig) -> int:
    """Ping Redis and warn when it keeps no data across a restart; 1 if it cannot be reached."""
    from gateway.stores import StoreUnavailable
    from gateway.stores.redis import RedisStore

    assert config.store.url is not None  # guaranteed by config validation
    store = RedisStore(config.store.url, prefix=config.store.prefix, timeout=config.store.timeout)
    try:
        await store.ping()
        problem = await store.persistence_problem()
    except StoreUnavailable as exc:
        print(f"probe store: FAILED ({exc.detail})", file=sys.stderr)
        return 1
    finally:
        await store.close()
    if problem:
        print(f"warning: store: {problem}", file=sys.stderr)
    print("probe store: OK")
    return 0

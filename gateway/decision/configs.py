"""``gateway decision-config FRONT``: a front proxy's config, generated from the gateway's own configuration.

Which headers the front removes before the app comes from the one boundary rule of proxy mode
(``upstream.headers.client_boundary``), so the generated config cannot forget a spelling, a route's
identity header or an authoritative header; deploy/decision/ holds this command's output for
config/example.yaml and the default addresses (tests/unit/test_decision_configs.py compares them).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gateway.config import GatewayConfig
from gateway.decision.fronts import FRONTS, Deployment
from gateway.upstream.headers import client_boundary

__all__ = ["DEFAULTS", "command", "deployment", "render"]

DEFAULTS = {"listen": "0.0.0.0:80", "gateway": "127.0.0.1:8080", "app": "127.0.0.1:8000", "state_dir": ""}


def deployment(config: GatewayConfig, front_cache: bool = False, **addresses: str) -> Deployment:
    """What the generator needs from ``config``; ``addresses``: listen, gateway, app, state_dir (DEFAULTS)."""
    return Deployment(
        front_cache=front_cache,
        boundary=client_boundary(config),
        decide_path=config.decision.path if config.decision is not None else "/auth/decide",
        forward_authorization=any(route.forward_authorization for route in config.routes),
        **{**DEFAULTS, **addresses},
    )


def render(front: str, config: GatewayConfig, front_cache: bool = False, **addresses: str) -> dict[str, str]:
    """File name -> text of ``front``'s config for ``config``."""
    return FRONTS[front].render(deployment(config, front_cache, **addresses))


def command(args: argparse.Namespace) -> int:
    from gateway.config import ConfigError, load_config

    if args.front not in FRONTS:
        print(f"unknown front {args.front!r}: one of {', '.join(FRONTS)}", file=sys.stderr)
        return 2
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"{args.config}: {len(exc.problems)} problem(s)", file=sys.stderr)
        for problem in exc.problems:
            print(f"  - {problem}", file=sys.stderr)
        return 1
    if config.decision is not None and config.decision.front != args.front:
        print(f"{args.config} says decision.front: {config.decision.front}, not {args.front}", file=sys.stderr)
        return 2
    given = {k: getattr(args, k) for k in DEFAULTS if getattr(args, k) is not None}
    files = render(args.front, config, args.front_cache, **given)
    if args.out:
        for name, text in files.items():
            (Path(args.out) / name).write_text(text)
            print(f"wrote {Path(args.out) / name}", file=sys.stderr)
    else:
        for name, text in files.items():
            if len(files) > 1:
                print(f"# ===== {name} =====")
            sys.stdout.write(text)
    if config.decision is None:
        print(f"note: {args.config} has no decision section; the gateway needs decision: {{front: {args.front}}}",
              file=sys.stderr)
    return 0

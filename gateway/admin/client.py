"""The CLI side of the admin API: ``gateway admin-key generate``, ``gateway sessions list|revoke`` and
``gateway service-keys create|list|revoke``.

The session verbs call the admin API of a running gateway (so they work with the memory store too): ``--config``
tells them the admin listener's address, the key comes from ``--admin-key-file`` or ``GATEWAY_ADMIN_KEY``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from gateway.admin import API_PREFIX

__all__ = ["KEY_ENV", "add_commands"]

KEY_ENV = "GATEWAY_ADMIN_KEY"
WILDCARDS = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}


class CommandError(Exception):
    """What the command prints to stderr before exiting 1."""


def cmd_admin_key_generate(args: argparse.Namespace) -> int:
    from gateway.auth.admin_keys import generate_admin_key
    from gateway.config.ops import admin_key_name

    try:
        name = admin_key_name(args.name)
    except ValueError as exc:
        print(f"NAME {args.name!r}: {exc}", file=sys.stderr)
        return 1
    key, digest = generate_admin_key()
    print(f"# the admin key of {name}, shown this once (give it to its holder; the gateway keeps only its SHA-256):")
    print(key)
    print("# add under admin.keys:")
    print(f"- {{name: {name}, sha256: {digest}}}")
    print("# or this line to admin.keys_file:")
    print(f"{name} {digest}")
    return 0


def _base_url(config_path: str, url: str | None) -> str:
    if url:
        return url.rstrip("/")
    from gateway.config import ConfigError, load_config

    try:
        config = load_config(config_path)
    except (ConfigError, OSError) as exc:
        raise CommandError(f"{config_path}: cannot read the configuration ({exc})") from None
    if config.admin is None:
        raise CommandError(f"{config_path}: no admin listener (admin:), so no admin API; see docs/admin.md")
    if not config.admin.keys and config.admin.keys_file is None:
        raise CommandError(f"{config_path}: no admin keys (admin.keys or admin.keys_file): the admin API is off")
    host = WILDCARDS.get(config.admin.host, config.admin.host)
    return f"http://[{host}]:{config.admin.port}" if ":" in host else f"http://{host}:{config.admin.port}"


def _admin_key(key_file: str | None) -> str:
    if key_file:
        try:
            key = Path(key_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise CommandError(f"--admin-key-file {key_file}: cannot read it ({type(exc).__name__})") from None
    else:
        key = os.environ.get(KEY_ENV, "").strip()
    if not key:
        raise CommandError(f"no admin key: give --admin-key-file FILE or set {KEY_ENV}")
    return key


def call_api(args: argparse.Namespace, method: str, path: str, body: dict[str, Any] | None = None,
             query: dict[str, str] | None = None) -> Any:
    """One admin API call; its JSON answer, or CommandError with the gateway's detail and code."""
    url = _base_url(args.config, args.url) + API_PREFIX + path
    if query:
        url += "?" + urllib.parse.urlencode(query)
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers={
        "Authorization": f"Bearer {_admin_key(args.admin_key_file)}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=args.timeout) as response:  # noqa: S310 - an http(s) URL we built
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        try:
            error = json.loads(exc.read())
            detail = f"{error['detail']} ({error['code']})"
        except (ValueError, KeyError, TypeError):
            detail = exc.reason
        raise CommandError(f"{method} {url}: {exc.code} {detail}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise CommandError(f"{method} {url}: no answer ({reason}); is the gateway running with this --config?") from None


def _when(value: object) -> str:
    if not isinstance(value, (int, float)):
        return "-"
    return datetime.fromtimestamp(value, timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")


def cmd_sessions_list(args: argparse.Namespace) -> int:
    answer = call_api(args, "GET", "sessions", query={"user": args.user})
    if args.json:
        print(json.dumps(answer, indent=2))
        return 0
    sessions = answer.get("sessions", [])
    print(f"{len(sessions)} live session(s) of {answer.get('user')!r}")
    for s in sessions:
        how = s.get("method") or "-"
        if s.get("provider"):
            how += f":{s['provider']}"
        if s.get("factors"):
            how += "+" + "+".join(s["factors"])
        print(f"{s['session']}  created {_when(s.get('created'))}  last refresh {_when(s.get('last_refresh'))}  "
              f"access until {_when(s.get('access_expires'))}  {how}  {s.get('client_ip') or '-'}  "
              f"{s.get('user_agent') or '-'}")
    return 0


def cmd_sessions_revoke(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"user": args.user}
    if args.session:
        body["session"] = args.session
    if args.provider:
        body["provider"] = args.provider
    answer = call_api(args, "POST", "sessions/revoke", body=body)
    revoked = answer.get("revoked", [])
    print(json.dumps(answer, indent=2) if args.json else f"{len(revoked)} session(s) revoked: {' '.join(revoked)}")
    return 0


def cmd_mfa_list(args: argparse.Namespace) -> int:
    answer = call_api(args, "GET", "mfa", query={"user": args.user})
    methods = answer.get("methods", [])
    line = f"{answer.get('user')!r}: {', '.join(methods) if methods else 'no second factor'}"
    grace = answer.get("grace")
    if isinstance(grace, dict):
        line += f"; enrolment grace {'until' if grace.get('open') else 'over (was until)'} {_when(grace.get('deadline'))}"
        if grace.get("ended_at") is not None:
            line += f", ended {_when(grace.get('ended_at'))}"
    print(json.dumps(answer, indent=2) if args.json else line)
    return 0



def cmd_mfa_reset(args: argparse.Namespace) -> int:
    answer = call_api(args, "POST", "mfa/reset", body={"user": args.user, "grace": args.grace})
    removed, revoked = answer.get("removed", []), answer.get("revoked", [])
    grace = "a new enrolment grace period at the next login" if args.grace else "no enrolment grace period"
    print(json.dumps(answer, indent=2) if args.json else
          f"{answer.get('user')!r}: removed {', '.join(removed) or 'nothing'}; {len(revoked)} session(s) revoked; {grace}")
    return 0


def _claims(pairs: list[str]) -> dict[str, Any]:
    """``--claim k=v`` pairs as claims: a name given twice is a list (``--claim roles=a --claim roles=b``)."""
    claims: dict[str, Any] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise CommandError(f"--claim {pair!r}: expected NAME=VALUE")
        if name in claims:
            claims[name] = [*(claims[name] if isinstance(claims[name], list) else [claims[name]]), value]
        else:
            claims[name] = value
    return claims


def cmd_service_keys_create(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"name": args.name, "owner": args.owner, "claims": _claims(args.claim or [])}
    if args.expires:
        body["expires_in"] = args.expires
    answer = call_api(args, "POST", "service-keys", body=body)
    if args.json:
        print(json.dumps(answer, indent=2))
        return 0
    print(f"# the service key {answer['name']!r} of {answer['owner']!r}, shown this once (the gateway keeps its SHA-256);")
    print(f"# expires {_when(answer.get('expires')) if answer.get('expires') else 'never'}; send it as X-Api-Key or a bearer:")
    print(answer["key"])
    return 0


def cmd_service_keys_list(args: argparse.Namespace) -> int:
    answer = call_api(args, "GET", "service-keys")
    if args.json:
        print(json.dumps(answer, indent=2))
        return 0
    keys = answer.get("service_keys", [])
    print(f"{len(keys)} service key(s)")
    for k in keys:
        state = f"revoked {_when(k['revoked'])}" if k.get("revoked") else "live"
        claims = ",".join(f"{n}={v}" for n, v in (k.get("claims") or {}).items()) or "-"
        print(f"{k['name']}  {k['prefix']}...  owner {k['owner']}  {state}  created {_when(k.get('created'))}  "
              f"expires {_when(k.get('expires'))}  last used {_when(k.get('last_used'))}  {claims}")
    return 0


def cmd_service_keys_revoke(args: argparse.Namespace) -> int:
    answer = call_api(args, "POST", "service-keys/revoke", body={"name": args.name})
    print(json.dumps(answer, indent=2) if args.json else
          f"revoked {answer['revoked']}: refused by every instance within {answer.get('bound_seconds')} s")
    return 0


def _run(func: Any) -> Any:
    def run(args: argparse.Namespace) -> int:
        try:
            return int(func(args))
        except CommandError as exc:
            print(str(exc), file=sys.stderr)
            return 1
    return run


def add_commands(sub: Any, default_config: str) -> None:
    """The ``admin-key``, ``sessions``, ``mfa`` and ``service-keys`` commands, on the ``gateway`` command's subparsers."""
    admin_key = sub.add_parser("admin-key", help="admin API keys").add_subparsers(dest="admin_key_command", required=True)
    generate = admin_key.add_parser("generate", help="print a new admin key once, and the config line with its SHA-256")
    generate.add_argument("name", help="who holds the key (named in every audit event of its calls)")
    generate.set_defaults(func=cmd_admin_key_generate)
    sessions = sub.add_parser("sessions", help="list or revoke a user's sessions through the admin API of a running gateway")
    verbs = sessions.add_subparsers(dest="sessions_command", required=True)
    listing = verbs.add_parser("list", help="a user's live sessions")
    listing.add_argument("user", help="the user's name (the tokens' sub)")
    listing.set_defaults(func=_run(cmd_sessions_list))
    revoking = verbs.add_parser("revoke", help="end one session of a user (--session), or all of them")
    revoking.add_argument("user", help="the user's name (the tokens' sub); with --provider, the provider's subject")
    revoking.add_argument("--session", help="only this session (an id from `gateway sessions list`)")
    revoking.add_argument("--provider", help="every session of this OIDC provider's user USER (the provider's sub)")
    revoking.set_defaults(func=_run(cmd_sessions_revoke))
    mfa = sub.add_parser("mfa", help="a user's second factors, through the admin API of a running gateway")
    mfa_verbs = mfa.add_subparsers(dest="mfa_command", required=True)
    mfa_list = mfa_verbs.add_parser("list", help="the second factors a user has enrolled")
    mfa_list.add_argument("user", help="the user's name (the tokens' sub)")
    mfa_list.set_defaults(func=_run(cmd_mfa_list))
    mfa_reset = mfa_verbs.add_parser("reset", help="remove every second factor of a user and end the user's sessions")
    mfa_reset.add_argument("user", help="the user's name (the tokens' sub)")
    mfa_reset.add_argument("--grace", action="store_true",
                           help="grant a new enrolment grace period (second_factor.grace_period); by default the reset "
                                "ends any grace and the user must enrol at the next login")
    mfa_reset.set_defaults(func=_run(cmd_mfa_reset))
    keys = sub.add_parser("service-keys", help="create, list or revoke service keys through the admin API of a running gateway")
    key_verbs = keys.add_subparsers(dest="service_keys_command", required=True)
    creating = key_verbs.add_parser("create", help="a new service key, printed once")
    creating.add_argument("name", help="the key's unique name (the identity's sub is service:NAME)")
    creating.add_argument("--owner", required=True, help="who is responsible for the key (a person or team)")
    creating.add_argument("--claim", action="append", metavar="NAME=VALUE",
                          help="a claim of the key's identity; repeat a name for a list (roles=a --claim roles=b)")
    creating.add_argument("--expires", help="lifetime, e.g. 90d or 12h (default: never expires)")
    creating.set_defaults(func=_run(cmd_service_keys_create))
    key_list = key_verbs.add_parser("list", help="every service key: name, prefix, owner, expiry, last use")
    key_list.set_defaults(func=_run(cmd_service_keys_list))
    key_revoke = key_verbs.add_parser("revoke", help="revoke a service key by name")
    key_revoke.add_argument("name")
    key_revoke.set_defaults(func=_run(cmd_service_keys_revoke))
    for verb in (listing, revoking, mfa_list, mfa_reset, creating, key_list, key_revoke):
        verb.add_argument("--config", default=default_config, help=f"the gateway's YAML configuration: where its admin "
                                                                   f"listener is (default {default_config})")
        verb.add_argument("--url", help="the admin listener's URL instead (e.g. http://10.0.0.5:9090)")
        verb.add_argument("--admin-key-file", help=f"a file holding the admin key (default: ${KEY_ENV})")
        verb.add_argument("--json", action="store_true", help="print the API's JSON answer")
        verb.add_argument("--timeout", type=float, default=10.0, help="seconds (default 10)")

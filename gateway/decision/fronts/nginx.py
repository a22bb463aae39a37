"""nginx (``auth_request``): exact header names only, and it drops every name with ``_`` by default.

Removes: every boundary name, by ``proxy_set_header NAME ""`` (or nginx's own value for the forwarding
headers) on the app's location, in every ``_``/``-`` spelling when underscores are let in, and the
``X-Forwarded-*`` names apps are known to read. Cannot remove: a family by prefix (``X-User-Anything``)
or another ``X-Forwarded-*``; the gateway refuses those in its decision.

nginx's own decision cache (``front_cache``, off by default) reuses a decision for any request with the
same method, host, URI and credential, whatever its other headers: a request that adds a header nginx
cannot name then reaches the app without a decision that would have refused it. So it is opt-in, and
docs/decision-mode.md says what it gives up; the gateway's own cache (in-process) has no such gap.
"""
from __future__ import annotations

from gateway.config.boundary import ClientBoundary, fold_header
from gateway.decision.fronts.base import Deployment, FrontKind, spellings

__all__ = ["FRONT", "REASK"]

REASK = "reask"  # the query of the second ask about a refused request: the gateway writes its audit event once

# nginx's own value for the forwarding headers it sets on the way to the app (and to the gateway)
_OWN = {"x-forwarded-for": "$remote_addr", "x-forwarded-proto": "$scheme", "x-forwarded-host": "$http_host",
        "x-request-id": "$request_id"}
# X-Forwarded-* that frameworks read (Spring, Tomcat, Express, Rails, Symfony, Werkzeug): removed by name too
_KNOWN_FORWARDED = ("X-Forwarded-Port", "X-Forwarded-Prefix", "X-Forwarded-Server", "X-Forwarded-Ssl",
                    "X-Forwarded-Scheme", "X-Forwarded-Protocol", "X-Forwarded-Uri", "X-Forwarded-Method",
                    "X-Forwarded-Path", "X-Forwarded-Client-Cert", "X-Forwarded-Tls-Client-Cert")


def removes(boundary: ClientBoundary, name: str) -> bool:
    if "." in name or ("_" in name and boundary.underscores):
        return True  # ignore_invalid_headers on, underscores_in_headers off: nginx passes such a header nowhere
    folded = fold_header(name)
    return folded in boundary.folded or folded in _KNOWN_FORWARDED_FOLDED


_KNOWN_FORWARDED_FOLDED = frozenset(fold_header(n) for n in _KNOWN_FORWARDED)


def _variable(name: str) -> str:
    return "$gw_" + fold_header(name).replace("-", "_")


def render(d: Deployment) -> dict[str, str]:
    b = d.boundary
    identity = {fold_header(n) for n in b.identity}
    sets: list[str] = []
    for name in b.identity:
        sets.append(f"        auth_request_set {_variable(name)} $upstream_http_{fold_header(name).replace('-', '_')};")
    listed = {fold_header(n) for n in b.names}
    for name in (*b.names, *(n for n in _KNOWN_FORWARDED if fold_header(n) not in listed)):
        folded = fold_header(name)
        value = _variable(name) if folded in identity else _OWN.get(folded, '""')
        for spelling in ([name] if b.underscores else [s for s in spellings(name) if "." not in s]):
            sets.append(f"        proxy_set_header {spelling} {value};")
    if not d.forward_authorization:
        sets.append('        proxy_set_header Authorization "";  # the app gets identity headers, not the token')
    hide = "\n".join(f"        proxy_hide_header {name};" for name in b.identity)
    underscores = "off" if b.underscores else "on"
    listen, gateway, app, path = d.listen, d.gateway, d.app, d.decide_path
    cache_dir = d.state_dir or "/run/nginx-gateway-decisions"
    if d.front_cache:
        cache_zone = f"""
# Decisions cached for the X-Accel-Expires the gateway sends (0 on every refusal). The key holds
# the credential, so keep the cache on tmpfs, readable by nginx only: tokens never reach a disk.
# A cached decision is reused whatever the request's other headers: one that adds a header nginx
# cannot name (X-User-Other, an unknown X-Forwarded-*) reaches the app undecided (docs/decision-mode.md).
proxy_cache_path {cache_dir} levels=1:2 keys_zone=gateway_decisions:10m max_size=64m inactive=60s use_temp_path=off;
"""
        cache_use = """
        proxy_cache gateway_decisions;
        # Never by token alone: method, host and URI are part of every key (routes differ by all three).
        # A websocket handshake is never cached (the gateway answers it with X-Accel-Expires: 0).
        proxy_cache_key "$request_method $http_host $request_uri $http_authorization $http_cookie";
        proxy_ignore_headers Cache-Control Expires;  # "private" would stop nginx: X-Accel-Expires decides
        proxy_cache_lock off;"""
    else:
        cache_zone = """
# No decision cache in nginx (`gateway decision-config nginx --front-cache` adds one, with what it gives
# up): every request is decided, by the gateway's own in-process cache where the route allows.
"""
        cache_use = ""
    site = f"""\
# Decision mode behind nginx: nginx proxies to the app, the gateway decides each request
# (docs/decision-mode.md). Generated by `gateway decision-config nginx`: regenerate it from your own
# gateway config rather than editing the header lists by hand. Include this file inside `http {{ }}`,
# with gateway-proxy-headers.conf next to it. The gateway's config needs
#   decision: {{front: nginx}}
#   trusted_proxies: [127.0.0.1]   # the front's address: its X-Forwarded-For is the client's
# and listens where `upstream gateway` points (loopback: decision.allow_from's default).
{cache_zone}
upstream gateway {{ server {gateway}; keepalive 32; }}
upstream app {{ server {app}; keepalive 32; }}

server {{
    listen {listen};
    server_name _;
    # X_User_Id is X-User-Id to CGI-style servers (gunicorn < 22, PHP-FPM): with "off", nginx passes no
    # header with "_" anywhere (client_headers.allow_underscores: {str(not b.underscores).lower()}).
    underscores_in_headers {underscores};
    ignore_invalid_headers on;

    # The gateway's own endpoints (login, refresh, logout, me, JWKS) are proxied as they are...
    location /auth/ {{
        proxy_pass http://gateway;
        include gateway-proxy-headers.conf;
    }}
    location /.well-known/ {{
        proxy_pass http://gateway;
        include gateway-proxy-headers.conf;
    }}
    # ...but never the decision endpoint: only nginx itself asks it, from the locations below.
    location ^~ {path} {{
        return 404;
    }}

    location / {{
        auth_request /_gateway_decide;
        # Every header proxy mode would not pass from the client is set here, unconditionally: identity
        # headers from the decision (an empty value is not sent at all), forwarding headers by nginx
        # itself, the rest removed. What nginx cannot name (X-User-Other, unknown X-Forwarded-*), the
        # gateway refuses in its decision.
{chr(10).join(sets)}
        # Refusals: nginx turns a 401/403 into its own page and any other non-2xx into a 500, so the
        # client gets the gateway's own answer (JSON, WWW-Authenticate, Retry-After) by asking once more.
        error_page 401 403 500 = @gateway_refusal;
        proxy_pass http://app;  # no URI part: the app gets the request target exactly as the gateway checked it
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header Host $http_host;
    }}

    location = /_gateway_decide {{
        internal;
        proxy_pass http://gateway{path};
        proxy_pass_request_body off;
        proxy_set_header Content-Length "";
        proxy_set_header X-Original-Method $request_method;  # the client's request, even in a subrequest
        proxy_set_header X-Original-URI $request_uri;  # raw, as the client sent it: the gateway checks it
        include gateway-proxy-headers.conf;{cache_use}
    }}

    location @gateway_refusal {{
        # "?{REASK}" marks the second ask, so the refusal is one audit event (the trailing "?" drops the client's query)
        rewrite ^ {path}?{REASK}? break;
        proxy_method GET;
        proxy_pass http://gateway;
        proxy_pass_request_body off;
        proxy_set_header Content-Length "";
        proxy_set_header X-Original-Method $request_method;
        proxy_set_header X-Original-URI $request_uri;
        include gateway-proxy-headers.conf;
        # should the decision have changed meanwhile, the client still never sees identity headers
{hide}
    }}
}}
"""
    headers = """\
# Included by nginx.conf wherever nginx talks to the gateway (keep it next to nginx.conf).
# Generated by `gateway decision-config nginx`.
proxy_http_version 1.1;
proxy_set_header Connection "";
proxy_set_header Host $http_host;
proxy_set_header X-Forwarded-For $remote_addr;
proxy_set_header X-Forwarded-Proto $scheme;
proxy_set_header X-Forwarded-Host $http_host;
"""
    return {"nginx.conf": site, "gateway-proxy-headers.conf": headers}


FRONT = FrontKind("nginx", "X-Original-Method", "X-Original-URI", "Host", removes, render)

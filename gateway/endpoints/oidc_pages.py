"""The HTML the sign-in flow shows a browser: error pages and the continue page. No script, no external asset.

A navigation that fails (provider down, bad state, refused user) must end on
a page a person can read, never on JSON or a traceback; every value is
escaped, and the pages forbid everything they do not need (CSP, framing).
"""
from __future__ import annotations

import html

from aiohttp import web

from gateway.context import ERROR_CODE
from gateway.errors import GatewayError

__all__ = ["PAGE_HEADERS", "continue_page", "error_page"]

PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
_TITLES = {
    400: "This sign-in link is not valid",
    401: "Sign-in was not accepted",
    403: "You cannot sign in here",
    429: "Too many sign-in attempts",
    502: "The identity provider is unavailable",
    503: "Sign-in is unavailable right now",
    504: "The identity provider did not answer in time",
}
_CODE_TITLES = {  # where the status alone would mislead: the provider answers, but gateway and provider disagree
    "provider_misconfigured": "This identity provider is misconfigured",
    "authentication_required": "You are not signed in",
}


def _page(title: str, body: str) -> str:
    return (
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<title>{html.escape(title)}</title></head>\n<body><main>\n{body}\n</main></body></html>\n"
    )


def error_page(error: GatewayError, retry_url: str | None = None) -> web.Response:
    """``error`` as a page with the same status and code (the access log and metrics see the code)."""
    title = _CODE_TITLES.get(error.code) or _TITLES.get(error.status, "Sign-in failed")
    retry = f'<p><a href="{html.escape(retry_url)}">Try again</a></p>' if retry_url else ""
    body = f"<h1>{html.escape(title)}</h1>\n<p>{html.escape(error.detail)}</p>\n<p>Code: <code>{html.escape(error.code)}</code></p>{retry}"
    headers = {**PAGE_HEADERS, **{k: v for k, v in error.headers.items() if k == "Retry-After"}}
    response = web.Response(status=error.status, text=_page(title, body), content_type="text/html", headers=headers)
    response[ERROR_CODE] = error.code
    return response


def continue_page(url: str) -> web.Response:
    """A same-site step to ``url``: SameSite=Strict cookies set by a redirect chain that began at the
    provider are withheld by browsers until a navigation starts on the gateway's own site."""
    target = html.escape(url)
    body = f'<p>Signed in. <a href="{target}">Continue</a></p>'
    page = _page("Signed in", body).replace(
        "<title>", f'<meta http-equiv="refresh" content="0;url={target}"><title>', 1)
    return web.Response(text=page, content_type="text/html", headers=PAGE_HEADERS)

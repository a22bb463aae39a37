"""The built-in sign-in page (GET endpoints.signin): which ways to sign in it lists, `next` carried into them
and checked by the one `next` rule, escaping of configured values, its Content-Security-Policy (the inline
script and style allowed by hash, nothing external), and when the page exists at all. The page in a real
browser, through a real provider, is tests/browser/test_oidc_browser.py."""
from __future__ import annotations

import base64
import hashlib
import re
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

PROVIDERS = {
    "corp": {"issuer": "http://127.0.0.1:9/realms/main", "client_id": "gw", "client_secret": "s" * 32,
             "display_name": 'Corp <script>alert("x")</script> & Co'},
    "google": {"issuer": "https://accounts.google.com", "client_id": "gw", "client_secret": "s" * 32},
}
OIDC = {"providers": PROVIDERS, "allowed_redirect_origins": ["https://spa.example.com"]}
PUBLIC = "http://gw.example.com"


class Elements(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.inline: dict[str, list[str]] = {"script": [], "style": []}
        self._open: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {k: v or "" for k, v in attrs}))
        self._open = tag if tag in self.inline else None

    def handle_data(self, data: str) -> None:
        if self._open:
            self.inline[self._open].append(data)

    def handle_endtag(self, tag: str) -> None:
        self._open = None

    def all(self, tag: str) -> list[dict[str, str]]:
        return [attrs for name, attrs in self.tags if name == tag]


def parse(text: str) -> Elements:
    page = Elements()
    page.feed(text)
    return page


def sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


async def page_of(gw: Any, query: str = "") -> tuple[Any, Elements]:
    resp = await gw.get(f"/auth/signin{query}")
    return resp, parse(await resp.text())


async def test_lists_providers_with_next_carried_and_values_escaped(make_gateway: Any) -> None:
    gw = await make_gateway(public_url=PUBLIC, oidc=OIDC)
    resp, page = await page_of(gw, "?next=/app/orders%3Fid%3D7")
    assert resp.status == 200 and resp.content_type == "text/html"
    links = {a["data-provider"]: a["href"] for a in page.all("a") if "data-provider" in a}
    assert list(links) == ["corp", "google"]
    for name, href in links.items():
        url = urlsplit(href)
        assert url.path == f"/auth/oidc/{name}/login" and parse_qs(url.query) == {"next": ["/app/orders?id=7"]}
    text = await resp.text()
    assert "<script>alert" not in text and "Corp &lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; Co" in text
    assert not page.all("form")  # bearer mode: the app shows its own password form
    assert resp.headers["Cache-Control"] == "no-store"


async def test_csp_allows_exactly_the_page_script_by_nonce_and_the_inline_style(make_gateway: Any) -> None:
    gw = await make_gateway(public_url=PUBLIC, oidc=OIDC, cookies={"enabled": True})
    resp, page = await page_of(gw)
    csp = dict(part.strip().split(" ", 1) for part in resp.headers["Content-Security-Policy"].split(";"))
    assert csp["default-src"] == "'none'" and csp["frame-ancestors"] == "'none'" and csp["base-uri"] == "'none'"
    [script] = page.all("script")
    assert page.inline["script"] == [] and script["type"] == "module" and script["src"] == "/auth/signin.js"
    assert csp["script-src"] == f"'nonce-{script['nonce']}'" and len(script["nonce"]) >= 16
    assert csp["style-src"] == sha256("".join(page.inline["style"]))
    assert csp["connect-src"] == "'self'" and csp["form-action"] == "'self'" and "img-src" not in csp
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    again, _ = await page_of(gw)  # a nonce is this answer's alone
    assert again.headers["Content-Security-Policy"] != resp.headers["Content-Security-Policy"]
    # nothing external: the one src is the gateway's own script, and every link stays on the gateway
    assert [attrs["src"] for _, attrs in page.tags if "src" in attrs] == ["/auth/signin.js"]
    assert all(a["href"].startswith("/") and not a["href"].startswith("//") for a in page.all("a"))
    served = await gw.get("/auth/signin.js")
    assert served.status == 200 and served.headers["Content-Type"].startswith("text/javascript")
    assert "completeWithWebAuthn" in await served.text()


async def test_no_script_without_the_password_form(make_gateway: Any) -> None:
    gw = await make_gateway(public_url=PUBLIC, oidc=OIDC)  # bearer mode: provider links only
    _, page = await page_of(gw)
    assert not page.all("script") and (await gw.get("/auth/signin.js")).status == 404


async def test_password_form_in_cookie_mode(make_gateway: Any) -> None:
    gw = await make_gateway(public_url=PUBLIC, oidc=OIDC, cookies={"enabled": True})
    _, page = await page_of(gw, "?next=https://spa.example.com/home")
    [form] = page.all("form")
    assert form["action"] == "/auth/token" and form["data-next"] == "https://spa.example.com/home"
    assert (form["data-user-field"], form["data-password-field"]) == ("username", "password")
    labels = {label["for"] for label in page.all("label")}
    assert {i["id"] for i in page.all("input")} == labels == {"username", "password"}  # every field labelled


@pytest.mark.parametrize("target", [
    "//evil.example", "https:evil.example", "/\\evil.example", "https://evil.example/", "/%2F%2Fevil.example",
    "%2F%2Fevil.example", "/%5Cevil.example", "javascript:alert(1)", "/a/../..//evil.example", "/\tevil",
])
async def test_an_off_site_next_is_a_400_page(make_gateway: Any, target: str) -> None:
    gw = await make_gateway(public_url=PUBLIC, oidc=OIDC, cookies={"enabled": True})
    resp = await gw.get("/auth/signin", params={"next": target})
    text = await resp.text()
    assert resp.status == 400 and resp.content_type == "text/html"
    assert "evil.example" not in re.sub(r"<p>[^<]*</p>", "", text) and "/auth/oidc/" not in text


async def test_next_twice_is_refused(make_gateway: Any) -> None:
    gw = await make_gateway(public_url=PUBLIC, oidc=OIDC)
    resp = await gw.get("/auth/signin?next=/a&next=//evil.example")
    assert resp.status == 400


async def test_the_page_exists_only_when_something_uses_it(make_gateway: Any, upstream: str) -> None:
    plain = await make_gateway()
    assert (await plain.get("/auth/signin")).status == 404
    route = {"name": "app", "prefix": "/app", "upstream": upstream, "login": "signin"}
    password_only = await make_gateway(cookies={"enabled": True}, routes=[route])
    resp, page = await page_of(password_only)
    assert resp.status == 200 and len(page.all("form")) == 1 and not page.all("a")
    moved = await make_gateway(public_url=PUBLIC, oidc=OIDC, endpoints={"signin": "/login"})
    assert (await moved.get("/login")).status == 200 and (await moved.get("/auth/signin")).status == 404


@pytest.mark.parametrize("webauthn", [None, {}, {"passkey_login": True}])
async def test_second_factor_steps_follow_the_config(make_gateway: Any, upstream: str, tmp_path: Any,
                                                     webauthn: dict[str, Any] | None) -> None:
    second_factor: dict[str, Any] = {"required": "everyone", **({"webauthn": webauthn} if webauthn is not None else {})}
    gw = await make_gateway(
        public_url="http://localhost", cookies={"enabled": True, "secure": False}, second_factor=second_factor,
        credentials={"url": f"sqlite:///{tmp_path / 'c.db'}", "keys": [{"id": "k1", "secret": "k" * 40}]},
        routes=[{"name": "app", "prefix": "/app", "upstream": upstream, "login": "signin"}],
    )
    resp, page = await page_of(gw, "?next=/app/x")
    ids = {attrs["id"] for _, attrs in page.tags if "id" in attrs}
    assert {"factor-step", "code", "enrol-step", "enrol-totp-begin", "enrol-qr", "enrol-code", "enrol-done"} <= ids
    assert ("use-key" in ids) == ("enrol-key-form" in ids) == (webauthn is not None)
    assert ("passkey-login" in ids) == bool(webauthn and webauthn.get("passkey_login"))
    [form] = [f for f in page.all("form") if f.get("id") == "password-form"]
    assert form["data-api"] == "/auth/mfa" and form["data-manage"] == "/auth/mfa/manage" and form["data-next"] == "/app/x"
    assert form["data-client"] == "/auth/client.js"
    labelled = {label["for"] for label in page.all("label")}
    assert {i["id"] for i in page.all("input")} == labelled  # every field labelled
    csp = resp.headers["Content-Security-Policy"]
    assert "img-src data:;" in csp and "'unsafe-inline'" not in csp  # the enrolment's QR code, nothing else

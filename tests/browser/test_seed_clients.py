"""The seed frontends, unchanged but for their base URL, in headless Chromium against the gateway.

One gateway serves every compatibility profile at once (as a deployment replacing several
backends would); proxied errors are in the flask-jwt-extended shape because seed 000 reads them.
The pages and their checks are in seed_pages.py (test_frontends_config.py runs the same against
the shipped config/frontends.yaml). The seed code lives in tests/browser/seeds/ (verbatim between
BEGIN/END SEED markers); axios comes from npm.
"""
from __future__ import annotations

import contextlib

import pytest

from harness import run_page_async
from seed_pages import SEED_000, SEED_003, SEED_004, check_000, check_003, check_004
from stack import Site, gateway_config, start_gateway

PROFILES = {
    "errors": "flask-jwt-extended",
    "profiles": [
        {"profile": "flask-jwt-extended"},
        {"profile": "djoser", "prefix": "/api/v1"},
        {"profile": "custom", "paths": {"login": "/api/login", "refresh": "/api/refresh-token"},
         "request": {"refresh": "refreshToken"}, "response": {"access": "jwtToken", "refresh": "refreshToken"}},
        {"profile": "simplejwt", "prefix": "/api"},
    ],
}


@pytest.fixture
async def gateway_with(tmp_path, aiohttp_server, browser_env):
    """``start(pages)`` -> (site, gateway): every profile at once, refresh tokens rotating by default."""
    async with contextlib.AsyncExitStack() as stack:
        async def start(pages):
            site = Site(pages)
            server = await aiohttp_server(site.app(), host="127.0.0.1")
            config = gateway_config(server.port, compat=PROFILES)
            config["tokens"]["rotate_refresh"] = True  # the profiles' own defaults must win for their clients
            gateway = await stack.enter_async_context(start_gateway(tmp_path, config))
            site.gateway = gateway.url
            return site, gateway
        yield start


async def run_seed(start, page: str) -> tuple[dict, Site, object]:
    site, gateway = await start({"seed": page})
    result = await run_page_async(gateway.url + "/app/page/seed", timeout=60)
    assert isinstance(result, dict) and "error" not in result, result
    return result, site, gateway


async def test_seed_000_flask_client(gateway_with):
    check_000(*await run_seed(gateway_with, SEED_000))


async def test_seed_003_djoser_vuex_client(gateway_with):
    check_003(*await run_seed(gateway_with, SEED_003), me={"email": "alice@example.com", "id": "alice", "username": "alice"})


async def test_seed_004_custom_client(gateway_with):
    check_004(*await run_seed(gateway_with, SEED_004))

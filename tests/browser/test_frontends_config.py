"""Every seed frontend against ONE gateway run from the shipped config/frontends.yaml itself.

The file is used as it is, read by ``gateway run --config config/frontends.yaml``; only its own
``${...}`` placeholders are set: the port, a 2 s access token without leeway (so expiry comes
within the test), the upstream (the test's site, which plays the API), and the frontends' origin.
The pages are served by the site on its own origin, as a dev server would serve them, so every
call crosses origins through the gateway's CORS policy. Each seed client then runs the same checks
as in test_seed_clients.py (seed_pages.py): login, protected call, expiry, silent refresh, retry,
each with the error style its route in the file gives it.
"""
from __future__ import annotations

import pytest

from harness import REPO_ROOT, free_port, run_page_async
from seed_pages import SEED_000, SEED_003, SEED_004, check_000, check_003, check_004
from stack import Site, run_gateway

CONFIG = REPO_ROOT / "config" / "frontends.yaml"
MARK = "<script>window.mark = (name) => fetch('__GATEWAY__/app/mark/' + name);</script>\n"  # in the gateway's log


@pytest.fixture
async def frontends_gateway(tmp_path, aiohttp_server, browser_env):
    """(site, gateway): the site on its own origin, and the gateway of config/frontends.yaml in front of it."""
    site = Site({}, password="alice-password")  # config/users.yaml
    server = await aiohttp_server(site.app(), host="127.0.0.1")
    origin = f"http://127.0.0.1:{server.port}"
    port = free_port()
    env = {"GATEWAY_HOST": "127.0.0.1", "GATEWAY_PORT": str(port), "GATEWAY_ACCESS_LIFETIME": "2s",
           "GATEWAY_LEEWAY": "0s", "UPSTREAM": origin, "FRONTEND_ORIGIN": origin}
    async with run_gateway(CONFIG, port, tmp_path / "gateway.log", env) as gateway:
        site.gateway = gateway.url
        yield site, gateway, origin


async def test_every_seed_client_against_the_shipped_frontends_config(frontends_gateway):
    site, gateway, origin = frontends_gateway
    seeds = [
        ("000", SEED_000, check_000, {}),
        ("003", SEED_003, check_003, {"me": {"email": "alice@example.com", "id": 1, "username": "alice"}}),
        ("004", SEED_004, check_004, {}),
    ]
    for name, page, check, extra in seeds:
        site.pages[name] = MARK + page
        site.api_hits.clear()
        view = gateway.since_now()  # this page's access-log entries only
        result = await run_page_async(f"{origin}/app/page/{name}", timeout=60)
        assert isinstance(result, dict) and "error" not in result, (name, result)
        check(result, site, view, **extra)
    # the pages came from the frontends' origin: every gateway answer they read passed CORS
    assert not [e for e in gateway.access_log() if e["status"] == 403], "a cross-origin call was refused"

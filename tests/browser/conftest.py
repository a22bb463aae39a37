import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness  # noqa: E402


@pytest.fixture(scope="session")
def browser_env():
    """Chromium + node present and `npm ci` done. Skips locally when something is missing; fails in
    CI (CI=true) or with GATEWAY_REQUIRE_BROWSER=1, so a broken setup can't pass silently."""
    missing = harness.missing_prerequisites()
    if missing:
        msg = "browser tests need: " + ", ".join(missing)
        if os.environ.get("CI") or os.environ.get("GATEWAY_REQUIRE_BROWSER") == "1":
            pytest.fail(msg)
        pytest.skip(msg)
    harness.ensure_npm_ci()
    return harness

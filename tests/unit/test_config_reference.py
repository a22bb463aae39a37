"""docs/configuration.md's key reference is generated from the models, so it cannot drift from them."""
from __future__ import annotations

import subprocess
import sys

from gateway.config import reference
from gateway.config.model import GatewayConfig
from gateway.config.types import Model
from tests.conftest import ROOT


def test_the_reference_is_current():
    page = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert reference.current(page) == reference.render(), (
        "docs/configuration.md: the reference is stale; run `python -m gateway.config.reference --write`"
    )


def test_every_key_has_a_description():
    missing = reference.missing_descriptions()
    assert not missing, f"describe each key in a one-line string literal under its field: {missing}"


def test_a_key_without_a_docstring_is_found():
    class Inner(Model):
        documented: int = 1
        """Has one."""
        bare: int = 2

    class Outer(Model):
        inner: tuple[Inner, ...] = ()
        """Has one too."""

    assert [m.rsplit(".", 1)[1] for m in reference.missing_descriptions(Outer)] == ["bare"]


def test_every_key_is_in_the_reference():
    rendered = reference.render()
    paths = [path for path, _, _ in reference.walk(GatewayConfig)]
    assert len(paths) > 150 and len(set(paths)) == len(paths)
    assert [p for p in paths if f"| `{p}` |" not in rendered and f"### `{p}`" not in rendered] == []
    for key in ("routes[].require.roles_any", "external_issuers.<name>.jwks_url", "users[].sql.url", "tokens.keys[].kid"):
        assert key in paths


def test_types_and_defaults():
    rows = {line.split(" | ")[0].strip("| `"): line for line in reference.render().splitlines() if line.startswith("| `")}
    assert "| duration | `15m` |" in rows["tokens.access_lifetime"]
    assert "| `memory` or `redis` | `memory` |" in rows["store.backend"]
    assert "| URL path | required |" in rows["routes[].prefix"]
    assert "| integer (0..65535) | `8080` |" in rows["listen.port"]
    assert '| `"gw:"` |' in rows["store.prefix"]
    assert "| string | — |" in rows["public_url"]
    assert r"`(\|(member={dn})(uniqueMember={dn}))`" in rows["users[].ldap.group_filter"]  # a pipe escaped in a table


def test_the_command_prints_without_writing():
    out = subprocess.run([sys.executable, "-m", "gateway.config.reference"], cwd=ROOT, capture_output=True, text=True,
                         timeout=60, check=True)
    assert out.stdout == reference.render()


def test_write_replaces_only_the_marked_part():
    text = f"intro\n{reference.START}\nold\n{reference.END}\noutro\n"
    assert reference.replace(text, "new\n") == f"intro\n{reference.START}\nnew\n{reference.END}\noutro\n"

"""The compiled build is what runs when it is expected, and the sources when they are (tests/support/compiled.py).

``make test`` runs the suite on the compiled build with ``GATEWAY_TEST_BUILD=compiled`` and tests/unit and
tests/http again with ``GATEWAY_PURE=1 GATEWAY_TEST_BUILD=pure``: a build step that silently produced nothing,
an extension Python did not pick, or a fallback switch that no longer works fails here, in the test process
and in a gateway process started the way the http and ops tests start theirs.
"""
from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.compiled import BUILD_ENV, compile_script, expected_build
from tests.support.processes import ROOT

SCRIPT = compile_script()
NAMES = [m.removesuffix(".py").replace("/", ".") for m in SCRIPT.MODULES]
PROBE = "import importlib, json, sys; print(json.dumps([importlib.import_module(n).__file__ for n in sys.argv[1:]]))"


def _files_in_subprocess(env: dict[str, str], cwd: Path = ROOT) -> list[str]:
    """The files a fresh interpreter imports the listed modules from, with the cwd and environment of a test's gateway."""
    done = subprocess.run([sys.executable, "-c", PROBE, *NAMES], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=60, check=True)
    files: list[str] = json.loads(done.stdout)
    return files


def _kind(path: str) -> str:
    return "compiled" if path.endswith(".so") else "pure" if path.endswith(".py") else path


def test_the_modules_of_the_expected_build_are_imported() -> None:
    expected = expected_build()
    files = {name: str(importlib.import_module(name).__file__) for name in NAMES}
    assert {name: _kind(f) for name, f in files.items()} == {name: expected for name in NAMES}, files
    assert all(f.startswith(str(ROOT)) for f in files.values()), files


def test_a_gateway_process_imports_the_same_build() -> None:
    expected = expected_build()
    assert [_kind(f) for f in _files_in_subprocess(dict(os.environ))] == [expected] * len(NAMES)


def test_a_gateway_started_outside_the_checkout_imports_the_same_build(tmp_path: Path) -> None:
    """The editable install puts the package on sys.path, not the checkout: the group's library must come along."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    assert [_kind(f) for f in _files_in_subprocess(env, cwd=tmp_path)] == [expected_build()] * len(NAMES)


def test_gateway_pure_imports_every_module_from_its_source() -> None:
    env = {**os.environ, "GATEWAY_PURE": "1"}
    files = _files_in_subprocess(env)
    assert [_kind(f) for f in files] == ["pure"] * len(NAMES), files
    assert files == [str(ROOT / m) for m in SCRIPT.MODULES]


@pytest.mark.skipif(os.environ.get(BUILD_ENV) != "compiled", reason="only where the compiled build is expected")
def test_the_build_records_the_sources_it_compiled() -> None:
    stamp = json.loads((ROOT / SCRIPT.STAMP).read_text())
    assert sorted(stamp) == sorted(SCRIPT.MODULES)
    assert SCRIPT.stale(ROOT) == []


def test_an_extension_no_longer_listed_is_stale_and_cleaned(tmp_path: Path) -> None:
    """A build with a longer list leaves extensions importing a group library the next build removes."""
    (tmp_path / "gateway").mkdir()
    stray = tmp_path / "gateway" / "cli.cpython-311-x86_64-linux-gnu.so"
    stray.write_bytes(b"")
    group = tmp_path / "gateway" / "ccb4719dcbcad819b89a__mypyc.cpython-311-x86_64-linux-gnu.so"
    group.write_bytes(b"")
    assert SCRIPT.stale(tmp_path) == [f"gateway/{stray.name} is no listed module's (an older build's)"]
    SCRIPT.clean(tmp_path)
    assert not stray.exists() and not group.exists()

"""The compiled build as the tests see it: scripts/compile.py (its module list, stale check) and the build expected.

``GATEWAY_TEST_BUILD=compiled`` (set by ``make test`` for its passes on the compiled build) or ``pure`` (its
pass with ``GATEWAY_PURE=1``) says which build a run must be exercising; unset, a tree with extensions
must import all of them and a tree without any none of them.
"""
from __future__ import annotations

import importlib.util
import os
import sys
from types import ModuleType

from tests.support.processes import ROOT

__all__ = ["BUILD_ENV", "compile_script", "expected_build"]

BUILD_ENV = "GATEWAY_TEST_BUILD"


def compile_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gateway_compile_script", ROOT / "scripts" / "compile.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def expected_build() -> str:
    """``compiled`` or ``pure``: what every module of the compiled list must be imported as in this run."""
    given = os.environ.get(BUILD_ENV)
    if given is not None:
        if given not in ("compiled", "pure"):
            raise ValueError(f"{BUILD_ENV}={given!r}: compiled or pure")
        return given
    if os.environ.get("GATEWAY_PURE") == "1":
        return "pure"
    return "compiled" if compile_script().compiled(ROOT) else "pure"

"""An authentication gateway: issues JWTs, validates them on every request, injects identity headers.

The names below are imported on first use, so ``gateway --help`` and ``gateway
check`` do not load the server.
"""
from __future__ import annotations

import os
import sys
from importlib.abc import PathEntryFinder
from importlib.machinery import EXTENSION_SUFFIXES, SOURCE_SUFFIXES, ExtensionFileLoader, FileFinder, SourceFileLoader
from importlib.util import module_from_spec, spec_from_loader
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gateway.app import create_app
    from gateway.config import ConfigError, GatewayConfig, load_config

__all__ = ["ConfigError", "GatewayConfig", "PURE_ENV", "create_app", "load_config"]
__version__ = "0.1.0"

# The compiled build (`make compiled`, docs/performance.md#compiled-hot-path) puts C extensions beside some modules'
# sources, and Python prefers an extension; GATEWAY_PURE=1 imports every module of the package from its source.
PURE_ENV = "GATEWAY_PURE"


def _sources_only() -> None:
    root = os.path.dirname(os.path.abspath(__file__))
    finder = FileFinder.path_hook((SourceFileLoader, SOURCE_SUFFIXES))

    def hook(path: str) -> PathEntryFinder:
        if path != root and not path.startswith(root + os.sep):
            raise ImportError("not in the gateway package")
        return finder(path)

    sys.path_hooks.insert(0, hook)
    for path in [p for p in sys.path_importer_cache if p == root or p.startswith(root + os.sep)]:
        del sys.path_importer_cache[path]


def _group_library() -> None:
    """Load the compiled group's shared library, kept in this package, under the top-level name its extensions import."""
    root = os.path.dirname(os.path.abspath(__file__))
    for entry in os.listdir(root):
        suffix = next((s for s in EXTENSION_SUFFIXES if entry.endswith(s)), None)
        name = entry.removesuffix(suffix) if suffix is not None else ""
        if name.endswith("__mypyc") and name not in sys.modules:
            spec = spec_from_loader(name, ExtensionFileLoader(name, os.path.join(root, entry)))
            assert spec is not None and spec.loader is not None
            module = module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)


if os.environ.get(PURE_ENV) == "1":
    _sources_only()
else:
    _group_library()


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from gateway.app import create_app

        return create_app
    if name in {"ConfigError", "GatewayConfig", "load_config"}:
        import gateway.config

        return getattr(gateway.config, name)
    raise AttributeError(f"module 'gateway' has no attribute {name!r}")

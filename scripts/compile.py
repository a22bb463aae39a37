"""The opt-in compiled build: mypyc compiles the hot modules of the proxied request into C extensions.

``python scripts/compile.py build [--tree DIR]`` compiles the modules listed in pyproject.toml's
``[tool.gateway.compiled]`` (this checkout's list, applied to DIR, by default this checkout) with the
mypyc of the venv (it ships with mypy; it needs a C compiler and Python's headers). The extensions go
beside their sources (``gateway/target.cpython-311-x86_64-linux-gnu.so`` next to ``gateway/target.py``),
plus the group's shared library (mypyc writes it at the tree's root; the build moves it into the package,
where gateway/__init__.py loads it under its top-level name, so a process started from any directory finds
it), and Python imports them instead of the sources; ``GATEWAY_PURE=1`` imports the sources anyway. The build records the
SHA-256 of every compiled source in ``build/compiled.json``.

``clean`` removes the extensions and mypyc's build directory; ``check`` exits 1 when an extension is
stale (its source changed since the build), so a test run never exercises code that is no longer the
source (tests/conftest.py runs it at the start of every session). Measured and decided in
docs/performance.md#compiled-hot-path.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path

__all__ = ["MODULES", "build", "clean", "compiled", "stale"]

HERE = Path(__file__).resolve().parent.parent
MODULES: list[str] = tomllib.loads((HERE / "pyproject.toml").read_text())["tool"]["gateway"]["compiled"]["modules"]
STAMP = Path("build") / "compiled.json"
GROUP_GLOB = "*__mypyc.cpython-*.so"
PACKAGE = "gateway"


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _extensions(tree: Path, module: str) -> list[Path]:
    source = tree / module
    return sorted(source.parent.glob(source.stem + ".cpython-*.so"))


def compiled(tree: Path = HERE) -> list[str]:
    """The listed modules that have an extension beside their source in ``tree``."""
    return [m for m in MODULES if _extensions(tree, m)]


def stale(tree: Path = HERE) -> list[str]:
    """Why the extensions in ``tree`` cannot be trusted; empty when there are none or they match their sources."""
    present = compiled(tree)
    strays = [f"{ext.relative_to(tree)} is no listed module's (an older build's)" for ext in _strays(tree)]
    if not present:
        return strays
    stamp = tree / STAMP
    if not stamp.exists():
        return [f"{tree / STAMP} is missing: extensions of unknown origin ({', '.join(present)})"]
    built: dict[str, str] = json.loads(stamp.read_text())
    problems = strays + [f"{m} has no extension while other modules do" for m in MODULES if m not in present]
    problems += [f"{m} changed since it was compiled" for m in present if built.get(m) != _digest(tree / m)]
    return problems


def _strays(tree: Path) -> list[Path]:
    """Extensions in the package of modules the list no longer names (a build with another list left them)."""
    listed = {ext for module in MODULES for ext in _extensions(tree, module)}
    return [ext for ext in (tree / PACKAGE).rglob("*.cpython-*.so")
            if ext not in listed and not ext.name.split(".")[0].endswith("__mypyc")]


def clean(tree: Path = HERE) -> None:
    for module in MODULES:
        for ext in _extensions(tree, module):
            ext.unlink()
    for ext in _strays(tree):  # every extension in the package is a build's: they import the group removed below
        ext.unlink()
    for group in [*tree.glob(GROUP_GLOB), *(tree / PACKAGE).glob(GROUP_GLOB)]:
        group.unlink()
    shutil.rmtree(tree / "build", ignore_errors=True)


def build(tree: Path = HERE) -> float:
    """Compile the listed modules of ``tree`` in place; the seconds it took."""
    clean(tree)
    started = time.monotonic()
    (tree / "build").mkdir()
    log = tree / "build" / "mypyc.log"
    with log.open("w") as out:
        done = subprocess.run([sys.executable, "-m", "mypyc", *MODULES], cwd=tree, stdout=out, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        tail = log.read_text()[-4000:]
        clean(tree)
        raise SystemExit(f"mypyc failed (whole log: {log}, removed by the clean; tail below)\n{tail}")
    for group in tree.glob(GROUP_GLOB):  # the editable install puts the package on sys.path, not the tree's root
        group.rename(tree / PACKAGE / group.name)
    (tree / STAMP).write_text(json.dumps({m: _digest(tree / m) for m in MODULES}, indent=1) + "\n")
    missing = [m for m in MODULES if not _extensions(tree, m)]
    if missing:
        raise SystemExit(f"mypyc built no extension for {', '.join(missing)}")
    return time.monotonic() - started


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", choices=("build", "clean", "check"))
    p.add_argument("--tree", type=Path, default=HERE, help="the checkout to act on (default: this one)")
    a = p.parse_args(argv)
    tree = a.tree.resolve()
    if a.command == "build":
        seconds = build(tree)
        print(f"compiled {len(MODULES)} modules with mypyc in {seconds:.0f} s ({tree})")
    elif a.command == "clean":
        clean(tree)
    else:
        problems = stale(tree)
        for problem in problems:
            print(f"stale compiled build: {problem}; run `make compiled` or `make clean-compiled`", file=sys.stderr)
        return 1 if problems else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())

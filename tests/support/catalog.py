"""What each test file shows, from the files themselves: ``python -m tests.support.catalog`` prints one row per
test module (layer, file, the first paragraph of its docstring), so the list can never drift from the tests.
tests/unit/test_docs.py requires every test module to open with such a docstring."""
from __future__ import annotations

import ast
import sys
from pathlib import Path

__all__ = ["catalog"]

TESTS = Path(__file__).resolve().parent.parent


def catalog() -> list[tuple[str, str, str]]:
    """(layer, file, summary) for every test module, layer by layer."""
    rows = []
    for path in sorted(TESTS.rglob("test_*.py")):
        if "node_modules" in path.parts:
            continue
        doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
        summary = " ".join(doc.split("\n\n")[0].split())
        relative = path.relative_to(TESTS.parent)
        rows.append((relative.parts[1], str(relative), summary))
    return rows


def main() -> None:
    out = sys.stdout
    out.write("| layer | file | shows |\n|---|---|---|\n")
    for layer, file, summary in catalog():
        out.write(f"| {layer} | `{file}` | {summary.replace('|', '/')} |\n")


if __name__ == "__main__":
    main()

"""The fenced code blocks of a Markdown page, with the ``docs-test`` marker written right before each.

A marker is an HTML comment on the last non-blank line before the fence, so readers see it in
the source and GitHub shows nothing::

    <!-- docs-test: skip (fragment of routes[]) -->
    <!-- docs-test: container podman (run by `make test-container`) -->

``tests/unit/test_docs_run.py`` runs or checks every block by its marker, and
``scripts/container-test.sh`` runs the container blocks of docs/deployment.md through this:

    python3 scripts/docs_blocks.py container podman docs/deployment.md   # prints that block's text

Standard library only (the container script runs it before anything is installed).
"""
from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

FENCE_OPEN = re.compile(r"^(\s*)(`{3,}|~{3,})\s*([\w+-]*)")
MARKER = re.compile(r"^\s*<!--\s*docs-test:\s*(.*?)\s*-->\s*$")


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # of the opening fence, 1-based
    lang: str
    text: str
    marker: str | None  # what follows "docs-test:" in the comment before the block, or None

    @property
    def kind(self) -> str | None:
        """The marker's first word: skip, container, wrap, file, users-file, gateway..."""
        return self.marker.split()[0] if self.marker else None

    @property
    def where(self) -> str:
        path = self.path.relative_to(Path.cwd()) if self.path.is_relative_to(Path.cwd()) else self.path
        return f"{path.as_posix()}:{self.line}"


def blocks(path: Path) -> list[Block]:
    lines = path.read_text(encoding="utf-8").splitlines()
    found: list[Block] = []
    i = 0
    while i < len(lines):
        opening = FENCE_OPEN.match(lines[i])
        if not opening:
            i += 1
            continue
        indent, fence, lang = opening.groups()
        close = re.compile(rf"^\s*{re.escape(fence[0])}{{{len(fence)},}}\s*$")
        j = i + 1
        while j < len(lines) and not close.match(lines[j]):
            j += 1
        body = [line[len(indent):] if line.startswith(indent) else line.lstrip() for line in lines[i + 1:j]]
        before = next((lines[k] for k in range(i - 1, -1, -1) if lines[k].strip()), "")
        marker = MARKER.match(before)
        found.append(Block(path, i + 1, lang, "\n".join(body) + "\n", marker.group(1) if marker else None))
        i = j + 1
    return found


def container_block(path: Path, engine: str) -> Block:
    """The one block of ``path`` marked ``container <engine>``."""
    matching = [b for b in blocks(path) if b.marker and b.marker.split()[:2] == ["container", engine]]
    if len(matching) != 1:
        raise SystemExit(f"{path}: {len(matching)} blocks marked 'docs-test: container {engine}', expected 1")
    return matching[0]


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[0] != "container":
        print("usage: docs_blocks.py container ENGINE PAGE.md", file=sys.stderr)
        return 2
    sys.stdout.write(container_block(Path(argv[2]), argv[1]).text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

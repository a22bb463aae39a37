"""The documentation: every relative link resolves, and the README stays a front page."""
from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

import pytest

from tests.conftest import ROOT

README_LIMIT = 12 * 1024  # bytes: what it is, the pipeline, the quick start, where next

PAGES = sorted([ROOT / "README.md", ROOT / "CONTRIBUTING.md", *(ROOT / "docs").glob("*.md")])

FENCE = re.compile(r"^(```|~~~)")
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")


def _prose(text: str) -> list[str]:
    """The lines outside fenced code blocks (a ``#`` or ``](`` in code is neither heading nor link)."""
    lines, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line.lstrip()):
            fenced = not fenced
            continue
        if not fenced:
            lines.append(line)
    return lines


def _without_code_spans(line: str) -> str:
    return re.sub(r"`[^`]*`", "", line)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading keeps its text
    text = re.sub(r"<[^>]+>", "", text).strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    result = set()
    for line in _prose(path.read_text(encoding="utf-8")):
        match = HEADING.match(line)
        if not match:
            continue
        base = slug(match.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        result.add(base if count == 0 else f"{base}-{count}")
    return result


def links(path: Path) -> list[str]:
    found = []
    for line in _prose(path.read_text(encoding="utf-8")):
        found.extend(LINK.findall(_without_code_spans(line)))
    return found


def _relative(link: str) -> bool:
    return not re.match(r"^[a-z][a-z0-9+.-]*:", link, re.I) and not link.startswith("//")


def test_the_pages_exist():
    names = {p.relative_to(ROOT).as_posix() for p in PAGES}
    assert {"README.md", "CONTRIBUTING.md", "docs/README.md"} <= names
    assert len(names) > 10, names


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_resolve(page: Path):
    problems = []
    for link in links(page):
        if not _relative(link):
            continue
        target, _, fragment = link.partition("#")
        file = (page.parent / unquote(target)).resolve() if target else page
        if not file.exists():
            problems.append(f"{link}: no file {file.relative_to(ROOT) if file.is_relative_to(ROOT) else file}")
            continue
        if fragment and file.suffix == ".md" and unquote(fragment) not in anchors(file):
            problems.append(f"{link}: no heading #{fragment} in {file.relative_to(ROOT)}")
    assert not problems, "\n".join(problems)


def test_every_docs_page_is_reachable():
    """A page nobody links to is a page nobody reads: the index or the README names each one."""
    linked = set()
    for page in (ROOT / "README.md", ROOT / "docs" / "README.md"):
        linked |= {(page.parent / link.partition("#")[0]).resolve() for link in links(page) if _relative(link)}
    pages = {p.resolve() for p in (ROOT / "docs").glob("*.md")} - {(ROOT / "docs" / "README.md").resolve()}
    assert not pages - linked, sorted(p.name for p in pages - linked)


def test_readme_stays_a_front_page():
    size = len((ROOT / "README.md").read_bytes())
    assert size < README_LIMIT, f"README.md is {size} bytes; move detail into docs/ (limit {README_LIMIT})"


def test_slugs_follow_github():
    assert slug("Upstream trust boundary") == "upstream-trust-boundary"
    assert slug("Decisions where the requirements were silent") == "decisions-where-the-requirements-were-silent"
    assert slug("`store.revocation_cache`: a local answer") == "storerevocation_cache-a-local-answer"
    assert slug("Docker and Kubernetes") == "docker-and-kubernetes"


def test_every_test_module_says_what_it_shows():
    """CONTRIBUTING.md's list of what each test file shows is `python -m tests.support.catalog`, read from these."""
    from tests.support.catalog import catalog

    rows = catalog()
    assert len(rows) > 50 and {layer for layer, _, _ in rows} >= {"unit", "http", "ops", "browser"}
    assert [file for _, file, summary in rows if len(summary) < 20] == []


def test_the_error_table_lists_exactly_the_error_codes():
    """docs/endpoints.md#errors names every code of gateway.errors.ErrorCode, and no other."""
    from gateway.errors import ErrorCode

    text = (ROOT / "docs" / "endpoints.md").read_text()
    section = text.split("## Errors", 1)[1].split("\n## ", 1)[0]
    rows = [line.split("|") for line in section.splitlines() if line.startswith("| ") and "`" in line]
    documented = {code for row in rows for code in re.findall(r"`([a-z_]+)`", row[2])}
    documented |= set(re.findall(r"\(`([a-z_]+)`\)", section))  # client_closed, told in the prose
    assert documented == {code.value for code in ErrorCode}

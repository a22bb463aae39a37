"""A pytest plugin for `make mutation` only (pyproject.toml's [tool.mutmut] loads it with -p): quick tests first.

mutmut runs each mutant's tests with -x in the order it names them, which is arbitrary; a mutant is killed by
the first failing test, so running the unit layer before the socket tests, and Hypothesis tests last, kills most
mutants in a fraction of a second instead of after minutes of HTTP tests. Which tests run does not change.
"""
from __future__ import annotations

import pytest


def _cost(item: pytest.Item) -> tuple[int, int]:
    layer = 0 if "/unit/" in f"/{item.nodeid}" else 1
    hypothesis = int(getattr(getattr(item, "obj", None), "is_hypothesis_test", False))
    return layer, hypothesis


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=_cost)  # stable: within a class of cost, the files' own order

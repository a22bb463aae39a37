"""gateway.ttl: the bounded deadline map every request-path cache is built on, on a clock the test moves."""
from __future__ import annotations

from gateway.ttl import TTLMap


def test_an_entry_counts_until_its_deadline_and_is_dropped_after():
    m: TTLMap[str, int] = TTLMap(10)
    assert m.put("a", 1, 100.0) is None
    assert m.get("a", 99.9) == 1 and m.holds("a", 0.0)
    assert m.get("a", 100.0) is None  # the deadline itself is past
    assert len(m) == 0 and m.deadline("a") is None


def test_full_the_oldest_goes_and_its_deadline_is_told():
    m: TTLMap[str, int] = TTLMap(2)
    m.put("a", 1, 50.0)
    m.put("b", 2, 10.0)
    m.put("a", 3, 60.0)  # setting a key again makes it the newest
    assert m.put("c", 4, 70.0) == 10.0  # b went, and b would have lived until 10
    assert list(m) == ["a", "c"] and m.get("a", 0.0) == 3


def test_zero_holds_nothing():
    m: TTLMap[str, int] = TTLMap(0)
    assert m.put("a", 1, 100.0) is None and len(m) == 0 and m.get("a", 0.0) is None


def test_purge_clears_the_old_end_and_sweep_everything_expired():
    m: TTLMap[str, int] = TTLMap(10)
    for key, deadline in (("a", 1.0), ("b", 2.0), ("c", 9.0), ("d", 3.0)):
        m.put(key, 0, deadline)
    m.purge(5.0)
    assert list(m) == ["c", "d"]  # d (expired) sits behind c (alive): purge stops at c
    m.sweep(5.0)
    assert list(m) == ["c"]
    assert m.pop("c") == 0 and m.pop("c") is None

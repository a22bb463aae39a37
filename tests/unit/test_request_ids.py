"""New request ids (middleware.request_id): 32 hex digits, never repeated across refills of the random pool, and never
shared between a process and a child it forks."""
from __future__ import annotations

import os
import re

from gateway.middleware import request_id


def test_new_ids_are_32_hex_digits_and_unique_across_pool_refills():
    ids = [request_id({}) for _ in range(2000)]  # about 8 refills of the 4 KiB pool
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)
    assert len(set(ids)) == len(ids)


def test_a_sane_client_id_is_kept_and_an_insane_one_replaced():
    assert request_id({"X-Request-Id": "abc-123"}) == "abc-123"
    assert re.fullmatch(r"[0-9a-f]{32}", request_id({"X-Request-Id": "bad id<script>"}))


def test_a_forked_child_never_hands_out_its_parents_next_ids():
    request_id({})  # the pool holds unread random bytes now
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next ids, to the parent
        os.close(read)
        os.write(write, ",".join(request_id({}) for _ in range(8)).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        child = pipe.read().split(",")
    os.waitpid(pid, 0)
    parent = [request_id({}) for _ in range(8)]
    assert len(child) == 8 and not set(child) & set(parent)

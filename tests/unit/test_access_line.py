"""The access line is written field by field: byte for byte what ``json.dumps`` of the record gives.

Hypothesis throws arbitrary text (quotes, backslashes, control characters,
non-ASCII, lone surrogates) at every string field that can carry outside
input, so the hand-written line can never be invalid or different JSON.
"""
from __future__ import annotations

import json
import os
import re
import time
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from gateway.context import (
    ERROR_CODE,
    REQUEST_ID,
    RESPONSE_BYTES,
    REVOCATION_SKIPPED,
    ROUTE_NAME,
    SUBJECT,
    UPSTREAM_ERROR,
    UPSTREAM_SECONDS,
)
from gateway.observe import access_log
from gateway.observe.access_log import FIELDS, MAX_LOGGED_PATH, _ms, access_line

TIME = re.compile(r'^\{"time": "\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", ')
texts = st.text(max_size=40)
maybe_seconds = st.none() | st.floats(min_value=0, max_value=100, allow_nan=False)


def _expected(record: dict[str, Any], line: str) -> str:
    """``json.dumps`` of the record, with the line's own timestamp (the clock moved meanwhile)."""
    record["time"] = json.loads(line)["time"]
    return json.dumps(record)


@settings(max_examples=200, deadline=None)
@given(sub=st.none() | texts, route=st.none() | texts, segment=texts, code=st.none() | texts,
       upstream=maybe_seconds, duration=st.floats(min_value=0, max_value=100, allow_nan=False),
       error=st.none() | st.sampled_from(["unavailable", "timeout", "aborted"]), skipped=st.booleans(),
       relayed=st.none() | st.integers(min_value=0, max_value=2**40), status=st.integers(100, 599))
def test_the_line_is_exactly_json_dumps_of_the_record(sub, route, segment, code, upstream, duration, error,
                                                       skipped, relayed, status):
    from urllib.parse import quote
    assume("access_token" not in segment)  # the path may say it; the line must not take it from the query
    request = make_mocked_request("PATCH", "/p/" + quote(segment, safe="") + "?access_token=secret")
    state: dict[Any, Any] = {REQUEST_ID: "rid-1"}
    for key, value in ((SUBJECT, sub), (ROUTE_NAME, route), (UPSTREAM_SECONDS, upstream), (UPSTREAM_ERROR, error),
                       (RESPONSE_BYTES, relayed)):
        if value is not None:
            state[key] = value
    if skipped:
        state[REVOCATION_SKIPPED] = True
    response = web.Response(status=status, body=b"0123456789")
    if code is not None:
        response[ERROR_CODE] = code
    line = access_line(state, request, response, duration)
    record: dict[str, Any] = {
        "time": None, "request_id": "rid-1", "method": "PATCH", "path": request.path[:MAX_LOGGED_PATH],
        "route": route, "status": status, "duration_ms": round(duration * 1000, 2),
        "upstream_ms": round(upstream * 1000, 2) if upstream is not None else None, "sub": sub,
        "client": request.remote or "unknown", "bytes": relayed if relayed is not None else 10, "pid": os.getpid(),
    }
    if code is not None:
        record["code"] = code
    if error is not None:
        record["upstream_error"] = error
    if skipped:
        record["revocation_check"] = "skipped"
    assert TIME.match(line)
    assert line == _expected(record, line)
    assert tuple(json.loads(line))[:len(FIELDS)] == FIELDS
    assert "access_token" not in line  # never the query string (the segment itself may be "secret")


@settings(max_examples=2000, deadline=None)
@given(seconds=st.floats(min_value=0, max_value=1e9, allow_nan=False)
       | st.integers(min_value=0, max_value=10**9).map(lambda n: n / 200_000))  # halves of the last digit
def test_milliseconds_are_written_as_round_to_two_places_writes_them(seconds: float) -> None:
    assert _ms(seconds) == repr(round(seconds * 1000, 2))


@pytest.mark.parametrize("now", [1765000000.0, 1765000000.0999, 1765000000.5, 1765000059.999999, 1765000060.001])
def test_the_timestamp_is_utc_to_the_millisecond(monkeypatch: pytest.MonkeyPatch, now: float) -> None:
    monkeypatch.setattr(access_log.time, "time", lambda: now)
    expected = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(int(now))) + f".{int(now % 1 * 1000):03d}Z"
    assert access_log._timestamp() == expected


def test_milliseconds_at_the_edges() -> None:
    for seconds in (0.0, 0.000001, 0.000005, 0.0000049999, 0.000125, 0.001, 0.0015, 1.0, 2.5, 123.456789):
        assert _ms(seconds) == repr(round(seconds * 1000, 2))
    assert _ms(None) == "null"


def test_long_paths_are_cut():
    request = make_mocked_request("GET", "/" + "a" * 5000)
    line = access_line({REQUEST_ID: "r"}, request, web.Response(), 0.001)
    assert len(json.loads(line)["path"]) == MAX_LOGGED_PATH

"""If-None-Match as RFC 9110 §13.1.2 reads it, for every body the gateway serves with an ETag."""
from __future__ import annotations

import pytest
from aiohttp.test_utils import make_mocked_request

from gateway.endpoints.table import etag, not_modified

TAG = etag(b"body")


@pytest.mark.parametrize(
    "header, expected",
    [
        (TAG, True),
        (f"W/{TAG}", True),  # weak comparison
        (f'"other", {TAG}', True),  # a list
        ("*", True),
        ('"other"', False),
        (TAG[:-2] + '"', False),  # a prefix of the tag is not the tag (substring matching was wrong)
        (f'"x{TAG[1:]}', False),
        ("", False),
    ],
)
def test_if_none_match(header: str, expected: bool) -> None:
    request = make_mocked_request("GET", "/", headers={"If-None-Match": header} if header else {})
    assert not_modified(request, TAG) is expected

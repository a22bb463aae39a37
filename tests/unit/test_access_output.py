"""An access line is one write of the bytes ``logging`` would write, and goes through ``logging`` whenever anything
else could see access records (observe/logs.py: write_access)."""
from __future__ import annotations

import io
import logging
import sys
from collections.abc import Callable, Iterator

import pytest

from gateway.observe.logs import ACCESS_LOGGER, configure_logging, write_access

LINE = '{"time": "2026-12-07T06:00:00.123Z", "request_id": "r1", "method": "GET", "status": 200, "sub": "caf\\u00e9"}'


@pytest.fixture
def logs() -> Iterator[Callable[[str], io.StringIO]]:
    """configure_logging (text or json) with its handler on a stream of the test's; the process's logging restored
    afterwards. Called in the test: pytest swaps sys.stderr for its own capture after fixtures run."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level, logging._srcfile, logging.logThreads, logging.logProcesses,
             logging.logMultiprocessing)

    def configure(fmt: str = "text") -> io.StringIO:
        stream, stderr = io.StringIO(), sys.stderr
        sys.stderr = stream
        try:
            configure_logging("INFO", fmt)
        finally:
            sys.stderr = stderr
        return stream

    try:
        yield configure
    finally:
        root.handlers[:], level = saved[0], saved[1]
        root.setLevel(level)
        logging._srcfile, logging.logThreads, logging.logProcesses, logging.logMultiprocessing = saved[2:]


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_the_line_is_what_logging_writes(logs: Callable[[str], io.StringIO], fmt: str) -> None:
    stderr = logs(fmt)
    logging.getLogger(ACCESS_LOGGER).info(LINE)
    through_logging = stderr.getvalue()
    stderr.seek(0)
    stderr.truncate()
    write_access(LINE)
    assert stderr.getvalue() == through_logging == LINE + "\n"


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.mark.parametrize("where", ["access logger", "root logger"])
def test_another_handler_gets_the_record(logs: Callable[[str], io.StringIO], where: str) -> None:
    stderr = logs("text")
    records = Records()
    logger = logging.getLogger(ACCESS_LOGGER if where == "access logger" else None)
    logger.addHandler(records)
    try:
        write_access(LINE)
    finally:
        logger.removeHandler(records)
    assert records.lines == [LINE]
    assert stderr.getvalue() == LINE + "\n"  # and the configured stream still has it, once


def test_a_filter_sees_the_record(logs: Callable[[str], io.StringIO]) -> None:
    stderr = logs("text")
    seen: list[str] = []
    root = logging.getLogger()

    def keep(record: logging.LogRecord) -> bool:
        seen.append(record.getMessage())
        return False  # dropped: nothing is written

    root.handlers[0].addFilter(keep)
    write_access(LINE)
    assert seen == [LINE] and stderr.getvalue() == ""

"""Log output: plain lines for a terminal, or one JSON object per line for a log pipeline.

Access-log records are JSON already (gateway.access); with ``--log-format json``
every other record becomes JSON too, so a collector parses one format.
"""
from __future__ import annotations

import json
import logging
import sys
import time

__all__ = ["JsonFormatter", "MalformedRequestFilter", "TextFormatter", "configure_logging"]

ACCESS_LOGGER = "gateway.access"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        if record.name == ACCESS_LOGGER:
            return record.getMessage()
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


class TextFormatter(logging.Formatter):
    """``WARNING gateway.store: ...``; access lines stay bare JSON."""

    def __init__(self) -> None:
        super().__init__("%(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        return record.getMessage() if record.name == ACCESS_LOGGER else super().format(record)


class MalformedRequestFilter(logging.Filter):
    """aiohttp logs a request it cannot parse with the offending raw bytes, a Cookie header or a
    query string included: keep the fact and the peer, drop the bytes (and the traceback)."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        exceptions = sys.modules.get("aiohttp.http_exceptions")  # not imported: no such error (and `--help` loads no aiohttp)
        if exceptions is not None and isinstance(error, exceptions.HttpProcessingError):
            peer = record.args[0] if isinstance(record.args, tuple) and record.args else "?"
            record.msg, record.args = "rejected a malformed HTTP request from %s (%s)", (peer, type(error).__name__)
            record.exc_info, record.exc_text = None, None
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


def configure_logging(level: str, fmt: str = "text") -> None:
    # Facts of a record that no formatter here prints, gathered for every record otherwise (the access log
    # writes one per request): the caller's file and line (a stack walk), thread, process and process name.
    # The Python logging HOWTO's "Optimization" section names exactly these switches.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    logging.getLogger("aiohttp.server").addFilter(MalformedRequestFilter())

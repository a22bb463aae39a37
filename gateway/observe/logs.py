"""Log output: plain lines for a terminal, or one JSON object per line for a log pipeline.

Access-log records are JSON already (gateway.access); with ``--log-format json``
every other record becomes JSON too, so a collector parses one format.

``write_access`` writes an access line straight to the stream ``configure_logging``
set up, as one preformatted write: both formatters print an access record's message
bare, so the bytes are those ``logging`` would write, without a ``LogRecord`` and the
handler chain per request (a fifth of a microsecond against about ten). Whenever
something else could see access records (a handler or filter added since, e.g. a
test's capture, or logging never configured here), the line goes through ``logging``.
"""
from __future__ import annotations

import asyncio
import json
import logging
import sys
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Hashable, TextIO

__all__ = ["REPEAT_INTERVAL", "JsonFormatter", "MalformedRequestFilter", "TextFormatter", "configure_logging",
           "warn_repeated", "write_access"]

ACCESS_LOGGER = "gateway.access"
_access = logging.getLogger(ACCESS_LOGGER)


class _Output:
    handler: logging.StreamHandler[TextIO] | None = None  # the one configure_logging installed last


def write_access(line: str) -> None:
    """One access line (the caller checked that INFO is enabled for ``gateway.access``)."""
    handler, root = _Output.handler, logging.root
    if (handler is None or _access.handlers or _access.filters or not _access.propagate or root.filters
            or handler.filters or len(root.handlers) != 1 or root.handlers[0] is not handler):
        _access.info(line)
        return
    with handler.lock:  # type: ignore[union-attr]  # createLock() made it
        try:
            handler.stream.write(line + handler.terminator)
            handler.stream.flush()
        except Exception:  # as StreamHandler.emit: reported on stderr, never raised into the request
            handler.handleError(logging.makeLogRecord({"name": ACCESS_LOGGER, "msg": line, "levelno": logging.INFO}))


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
    _Output.handler = handler
    logging.getLogger("aiohttp.server").addFilter(MalformedRequestFilter())


REPEAT_INTERVAL = 10.0  # seconds: at most one line per repeated warning in this time
_MAX_KEYS = 1024  # distinct repeated warnings remembered; the oldest is forgotten beyond


@dataclass(slots=True)
class _Seen:
    last: float  # when its last line was written (monotonic)
    held: int = 0  # occurrences held back since
    flushing: bool = False  # a line for them is scheduled


_lock = threading.Lock()  # LDAP sources log from their threads too
_seen: OrderedDict[Hashable, _Seen] = OrderedDict()


def warn_repeated(logger: logging.Logger, msg: str, *args: object, key: Hashable = None,
                  level: int = logging.WARNING, interval: float = REPEAT_INTERVAL) -> None:
    """Log ``msg % args`` the first time, then at most once per ``interval`` for the same warning, with a count.

    A warning that happens on every request (a user source down, an identity provider
    unreachable) would otherwise write one line per request. The same warning is
    ``key`` (default: the logger, the message and its arguments). Occurrences held
    back are reported with the next line, ``(repeated N times in the last Ns)``, or,
    when the warning stops, by a line of its own ``interval`` after the last one
    written (when an event loop runs to schedule it).
    """
    ident = (logger.name, msg, args) if key is None else (logger.name, key)
    now = time.monotonic()
    with _lock:
        seen = _seen.get(ident)
        if seen is not None and now - seen.last < interval:
            seen.held += 1
            if not seen.flushing:
                seen.flushing = _schedule(seen.last + interval - now, logger, msg, args, ident, level)
            return
        held = 0 if seen is None else seen.held
        _seen[ident] = _Seen(now, 0, seen is not None and seen.flushing)
        _seen.move_to_end(ident)
        while len(_seen) > _MAX_KEYS:
            _seen.popitem(last=False)
    suffix = f" (repeated {held} times in the last {interval:g}s)" if held else ""
    logger.log(level, msg + suffix, *args)


def _schedule(delay: float, logger: logging.Logger, msg: str, args: tuple[object, ...], ident: Hashable,
              level: int) -> bool:
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return False
    loop.call_later(max(0.0, delay), _flush, logger, msg, args, ident, level)
    return True


def _flush(logger: logging.Logger, msg: str, args: tuple[object, ...], ident: Hashable, level: int) -> None:
    """The held-back count of a warning that stopped (or has not come again) since its last line."""
    now = time.monotonic()
    with _lock:
        seen = _seen.get(ident)
        if seen is None:
            return
        seen.flushing = False
        held, since = seen.held, now - seen.last
        if not held:
            return
        seen.last, seen.held = now, 0
    logger.log(level, msg + f" (repeated {held} times in the last {since:.0f}s)", *args)

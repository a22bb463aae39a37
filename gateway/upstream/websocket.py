"""Websocket routes: the handshake read, then messages relayed both ways until either side or the token ends.

``pipeline.admit`` checks a handshake like any request (route, credentials,
policy, header rewrite); this module reads what is particular to it and
carries the frames.

Browsers cannot set headers on a websocket, so besides ``Authorization`` a
route may accept the token in a query parameter or in a ``bearer.<token>``
subprotocol (``websocket_token``). Either way the token never reaches the
upstream (unless ``forward_authorization`` asks for it, and then only as an
``Authorization`` header) and is never logged. The upstream handshake carries
the same header rewrite as a proxied request: client identity headers dropped,
verified claims injected. The upstream is connected before the client's
upgrade is accepted, so an unreachable upstream is a plain 502, not a socket
that opens and dies.
"""
from __future__ import annotations

import asyncio
import base64
import binascii
import logging
from dataclasses import dataclass
from typing import Union
from urllib.parse import unquote_plus

import aiohttp
from aiohttp import WSCloseCode, WSMsgType, web
from multidict import CIMultiDict
from yarl import URL

from gateway.auth.credentials import bearer_token
from gateway.auth.tokens import Claims
from gateway.config import Route
from gateway.context import ANSWER_HEADERS
from gateway.errors import ErrorCode, GatewayError
from gateway.target import RequestPath
from gateway.upstream.websocket_sessions import SOCKET_SESSIONS, SocketSession, SocketSessions

__all__ = [
    "Handshake", "check_handshake", "close_all", "install", "is_websocket", "read_handshake", "serve",
    "without_handshake_headers",
]

MAX_MESSAGE = 4 * 1024 * 1024  # per message, each direction; a larger one closes with 1009
CLOSE_TIMEOUT = 5.0  # how long to wait for the peer's close frame
# Close codes an endpoint may put in a close frame (RFC 6455 §7.4); 1005/1006/1015 may not be sent.
_SENDABLE = frozenset({1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014})
_PROTOCOL_HEADER = "Sec-WebSocket-Protocol"

Socket = Union[web.WebSocketResponse, aiohttp.ClientWebSocketResponse]
_Pair = tuple[web.WebSocketResponse, aiohttp.ClientWebSocketResponse]  # client side, upstream side
_OPEN: web.AppKey[set[_Pair]] = web.AppKey("open_websockets", set)


def _tokens(request: web.Request, header: str) -> set[str]:
    return {t.strip().lower() for t in ",".join(request.headers.getall(header, [])).split(",")}


def is_websocket(request: web.Request) -> bool:
    """Whether the request asks for ``Upgrade: websocket``; every other request is plain HTTP."""
    return "Upgrade" in request.headers and "websocket" in _tokens(request, "Upgrade")  # most send none


def check_handshake(request: web.Request) -> None:
    """Refuse what RFC 6455 §4.2.1 does not call a handshake, before any token is looked at."""
    if request.method != "GET":
        raise GatewayError(405, ErrorCode.METHOD_NOT_ALLOWED, "A websocket handshake is a GET", headers={"Allow": "GET"})
    if "upgrade" not in _tokens(request, "Connection"):
        raise _bad("A websocket handshake needs Connection: Upgrade")
    if request.headers.get("Sec-WebSocket-Version", "").strip() != "13":
        raise GatewayError(426, ErrorCode.BAD_REQUEST, "Only websocket version 13 is supported", headers={"Sec-WebSocket-Version": "13"})
    try:
        key = base64.b64decode(request.headers.get("Sec-WebSocket-Key", ""), validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != 16:
        raise _bad("Sec-WebSocket-Key must be 16 random bytes in base64")


@dataclass(frozen=True, slots=True)
class Handshake:
    """What the client's handshake carries, with the token taken out of where it came from."""

    token: str | None
    query: str  # forwarded upstream, the token parameter removed
    protocols: tuple[str, ...]  # offered upstream, the token subprotocol removed
    token_protocol: str | None  # the client's bearer.<token> entry, if that is how it came


def _bad(detail: str) -> GatewayError:
    return GatewayError.bad_request(detail)


def _take_query_token(query: str, name: str) -> tuple[str | None, str]:
    kept, found = [], []
    for part in query.split("&") if query else []:
        key, _, value = part.partition("=")
        if unquote_plus(key) == name:
            found.append(unquote_plus(value))
        else:
            kept.append(part)
    if len(found) > 1:
        raise _bad(f"The {name} query parameter is given more than once")
    return (found[0] if found else None), "&".join(kept)


def _offered_protocols(request: web.Request) -> list[str]:
    lines = request.headers.getall(_PROTOCOL_HEADER, [])
    if len(lines) > 1:
        raise _bad("Send the subprotocols in one Sec-WebSocket-Protocol header")
    return [p.strip() for p in lines[0].split(",") if p.strip()] if lines else []


def read_handshake(request: web.Request, route: Route, query: str) -> Handshake:
    """The token and what remains to forward; more than one way of sending the token is refused (RFC 6750 §2)."""
    protocols = _offered_protocols(request)
    if route.auth == "none":
        return Handshake(None, query, tuple(protocols), None)
    options = route.websocket_token
    found: list[str] = []
    header = bearer_token(request)
    if header is not None:
        found.append(header)
    if options.query_param is not None:
        from_query, query = _take_query_token(query, options.query_param)
        if from_query is not None:
            found.append(from_query)
    token_protocol = None
    if options.subprotocol_prefix is not None:
        carrying = [p for p in protocols if p.startswith(options.subprotocol_prefix)]
        if len(carrying) > 1:
            raise _bad("More than one subprotocol carries a token")
        if carrying:
            token_protocol = carrying[0]
            protocols.remove(token_protocol)
            found.append(token_protocol[len(options.subprotocol_prefix):])
    if len(found) > 1:
        raise _bad("Send the token one way only: Authorization header, query parameter or subprotocol")
    if found and not found[0]:
        raise GatewayError.unauthorized(ErrorCode.TOKEN_NOT_VALID, "The token is empty")
    return Handshake(found[0] if found else None, query, tuple(protocols), token_protocol)


def _upstream_url(route: Route, path: RequestPath, query: str) -> URL:
    return URL(path.upstream_url(route, query), encoded=True)


def without_handshake_headers(headers: CIMultiDict[str]) -> CIMultiDict[str]:
    """aiohttp negotiates key, version, subprotocols and extensions with the upstream itself."""
    return CIMultiDict((k, v) for k, v in headers.items() if not k.lower().startswith("sec-websocket-"))


async def _connect(
    session: aiohttp.ClientSession, url: URL, hs: Handshake, headers: CIMultiDict[str], timeout: float
) -> aiohttp.ClientWebSocketResponse:
    try:
        async with asyncio.timeout(timeout):
            return await session.ws_connect(
                url, protocols=hs.protocols, headers=headers, autoclose=False, autoping=False,
                timeout=aiohttp.ClientWSTimeout(ws_close=CLOSE_TIMEOUT), max_msg_size=MAX_MESSAGE,
            )
    except aiohttp.WSServerHandshakeError as exc:
        if 400 <= exc.status < 500:
            detail = f"The upstream service refused the websocket (HTTP {exc.status})"
            raise GatewayError(exc.status, ErrorCode.UPSTREAM_REFUSED, detail) from None
        raise GatewayError(502, ErrorCode.UPSTREAM_UNAVAILABLE, "The upstream service did not accept the websocket") from None
    except TimeoutError:
        raise GatewayError(504, ErrorCode.UPSTREAM_TIMEOUT, "The upstream service did not answer in time") from None
    except (aiohttp.ClientError, OSError):
        raise GatewayError(502, ErrorCode.UPSTREAM_UNAVAILABLE, "The upstream service is unavailable") from None


async def serve(
    request: web.Request, route: Route, path: RequestPath, hs: Handshake, headers: CIMultiDict[str],
    claims: Claims | None, session: aiohttp.ClientSession, leeway: float,
) -> web.StreamResponse:
    """Connect upstream, accept the client, relay until either side closes (``pipeline.admit`` decided the rest)."""
    return await _open_and_relay(request, route, path, hs, headers, session, claims, leeway)


async def _open_and_relay(
    request: web.Request, route: Route, path: RequestPath, hs: Handshake, headers: CIMultiDict[str],
    session: aiohttp.ClientSession, claims: Claims | None, leeway: float,
) -> web.StreamResponse:
    upstream = await _connect(session, _upstream_url(route, path, hs.query), hs, headers, route.timeout)
    # The upstream's choice of subprotocol, else the token's own entry: a browser that offered
    # subprotocols fails the connection unless the server selects one of them.
    chosen = upstream.protocol or hs.token_protocol
    client = web.WebSocketResponse(
        protocols=(chosen,) if chosen else (), autoping=False, autoclose=False,
        timeout=CLOSE_TIMEOUT, max_msg_size=MAX_MESSAGE,
    )
    answer = request.app.get(ANSWER_HEADERS)
    if answer is not None:  # X-Request-Id, Server, CORS: set once, before the handshake answer is prepared
        answer(request, client)
    sessions = request.app[SOCKET_SESSIONS]
    limits = route.websocket_session
    lifetime = sessions.open(dict(claims) if claims is not None else None, leeway, limits.max_lifetime, limits.idle_timeout)
    try:
        await client.prepare(request)
        await _relay(request.app.get(_OPEN), client, upstream, lifetime)
    finally:
        sessions.close(lifetime)
        await upstream.close(code=WSCloseCode.GOING_AWAY)  # no-op unless something went wrong
        if client.prepared:
            await client.close(code=WSCloseCode.INTERNAL_ERROR)
    return client


def _close_code(code: int) -> int:
    return code if code in _SENDABLE or 3000 <= code <= 4999 else WSCloseCode.OK


async def _pump(source: Socket, target: Socket, source_gone: int, target_gone: int, session: SocketSession) -> None:
    """Copy messages from source to target; when source closes, close target alike, then answer source."""
    try:
        while True:
            msg = await source.receive()
            session.touch()
            if msg.type is WSMsgType.TEXT:
                await target.send_str(msg.data)
            elif msg.type is WSMsgType.BINARY:
                await target.send_bytes(msg.data)
            elif msg.type is WSMsgType.PING:
                await target.ping(msg.data)
            elif msg.type is WSMsgType.PONG:
                await target.pong(msg.data)
            else:
                break
    except (ConnectionError, aiohttp.ClientError):  # the target went away while we wrote to it
        await source.close(code=target_gone)
        return
    if msg.type is WSMsgType.CLOSE:
        code = _close_code(msg.data)
        await target.close(code=code, message=(msg.extra or "").encode())
        await source.close(code=code)
    elif msg.type in (WSMsgType.CLOSED, WSMsgType.ERROR):
        await target.close(code=source_gone)
    # CLOSING: this socket is being closed by the other pump or by shutdown; nothing left to do.


async def _relay(
    registry: set[_Pair] | None, client: web.WebSocketResponse, upstream: aiohttp.ClientWebSocketResponse, session: SocketSession
) -> None:
    pair = (client, upstream)
    if registry is not None:
        registry.add(pair)
    pumps = [
        asyncio.create_task(_pump(client, upstream, WSCloseCode.GOING_AWAY, WSCloseCode.BAD_GATEWAY, session)),
        asyncio.create_task(_pump(upstream, client, WSCloseCode.BAD_GATEWAY, WSCloseCode.GOING_AWAY, session)),
    ]
    watchdog = asyncio.create_task(_end_with_session(session, client, upstream))
    try:
        await asyncio.gather(*pumps)
    finally:
        for task in (*pumps, watchdog):
            task.cancel()
        await asyncio.gather(*pumps, watchdog, return_exceptions=True)
        if registry is not None:
            registry.discard(pair)


async def _end_with_session(session: SocketSession, client: web.WebSocketResponse,
                            upstream: aiohttp.ClientWebSocketResponse) -> None:
    """Close both sides once the token expires or is revoked, or a route bound is reached (ws_sessions)."""
    await session.wait()
    message = session.reason.encode()
    await asyncio.gather(
        client.close(code=session.code, message=message), upstream.close(code=session.code, message=message),
        return_exceptions=True,
    )


async def close_all(app: web.Application) -> None:
    """On shutdown, open websockets close with 1001 so clients reconnect to another instance."""
    pairs = [*app[_OPEN]]
    await asyncio.gather(
        *(ws.close(code=WSCloseCode.GOING_AWAY, message=b"gateway shutting down") for pair in pairs for ws in pair),
        return_exceptions=True,
    )


class _NoOfferedProtocols(logging.Filter):
    """aiohttp warns with the client's subprotocol list when it selects none; that list may hold a token."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Client protocols" not in str(record.msg)


def install(app: web.Application, sessions: SocketSessions) -> None:
    """Track open websockets on ``app`` so that shutdown closes them cleanly, and their tokens' end."""
    app[_OPEN] = set()
    app[SOCKET_SESSIONS] = sessions
    app.on_shutdown.append(close_all)
    ws_logger = logging.getLogger("aiohttp.websocket")
    if not any(isinstance(f, _NoOfferedProtocols) for f in ws_logger.filters):
        ws_logger.addFilter(_NoOfferedProtocols())

"""PROTOTYPE, for measurement only: the gateway's checks on a server made of asyncio Protocols + httptools.

NOT the gateway and not wired into it. It answers issue 12's question "is
aiohttp's server the wall?" by running the same per-request work the gateway
does on its proxy path, minus aiohttp's server: the request parsed by
httptools (llhttp), the request id, the path and Host checks
(``target.parse_target``, ``net.parse_host``), the route table
(``runtime.router``), the bearer token verified and its revocation checked
(``auth.credentials.verify_for_route`` on the configured store, revocation
cache included), the route's claim requirements, the header rewrite
(``runtime.rewrite``, spoofed identity headers stripped), the signed identity
header when configured, the gateway's own upstream client (``upstream.client``,
``upstream.pool``), hop-by-hop headers removed from the answer, the per-route
metrics and the access-log line.

What it leaves out, so its figure is a ceiling and not a product: request
bodies (GET/HEAD only, anything else 405), streaming (the answer's body is
read whole, then written), the gateway's own endpoints, CORS, rate limits,
cookies, websockets, the connection and per-client limits, timeouts on the
client side, graceful shutdown. ``python -m bench.protocol_prototype --config
<gateway.yaml> --port N``; the bench starts it as the ``prototype`` target.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
import time
from http import HTTPStatus
from typing import Any, cast

import httptools
from multidict import CIMultiDict, CIMultiDictProxy

from gateway.auth.credentials import verify_for_route
from gateway.config import load_config
from gateway.context import REQUEST_ID, RESPONSE_BYTES, ROUTE_NAME, SUBJECT, UPSTREAM_SECONDS
from gateway.errors import GatewayError
from gateway.middleware import request_id
from gateway.net import parse_host
from gateway.observe.access_log import access_line
from gateway.observe.logs import configure_logging
from gateway.observe.metrics import Metrics
from gateway.policy import check_requirements
from gateway.runtime import Runtime
from gateway.stores import create_store
from gateway.stores.revocation_cache import cached_revocations, revocation_feed
from gateway.target import parse_target
from gateway.upstream.client import request_head, send
from gateway.upstream.headers import HOP_BY_HOP, connection_tokens
from gateway.upstream.pool import Origin, Pool

access_log = logging.getLogger("gateway.access")
_KNOWN = frozenset(int(s) for s in HTTPStatus)


class _Request:
    """What ``HeaderRewrite.headers`` and ``access_line`` read of a request (duck-typed for the prototype)."""

    __slots__ = ("method", "path", "headers", "remote")

    def __init__(self, method: str, path: str, headers: CIMultiDictProxy[str], remote: str | None) -> None:
        self.method, self.path, self.headers, self.remote = method, path, headers, remote


class _Response(dict[Any, Any]):
    """What ``access_line`` reads of an answer."""

    def __init__(self, status: int) -> None:
        super().__init__()
        self.status = status
        self.content_length = 0


class Prototype:
    """One configuration's runtime, store, upstream pool and metrics, shared by every connection."""

    def __init__(self, config_path: str) -> None:
        config = load_config(config_path)
        self.metrics = Metrics()
        store = create_store(config.store)
        ttl = config.tokens.access_lifetime + config.tokens.leeway
        self.store = cached_revocations(store, revocation_feed(store, self.metrics), config.store.revocation_cache, ttl,
                                        self.metrics)
        self.runtime = Runtime.build(config, self.store, None, events=self.metrics)
        self.pool = Pool(config.limits.max_head_size)
        self.origins: dict[str, Origin] = {}
        self.server_header = config.server_header.encode()

    async def answer(self, method: str, target: str, headers: CIMultiDictProxy[str], peer: str | None) -> bytes:
        started = time.perf_counter()
        rid = request_id(headers)
        path_text = target.partition("?")[0]
        state: dict[Any, Any] = {}
        try:
            head, body, status = await self._proxy(method, target, headers, peer, rid, state)
        except GatewayError as exc:
            status, body = exc.status, json.dumps({"detail": exc.detail, "code": exc.code}).encode()
            head = b"Content-Type: application/json\r\n"
        out = (b"HTTP/1.1 %d %s\r\n" % (status, HTTPStatus(status).phrase.encode() if status in _KNOWN else b"-") + head
               + b"Content-Length: %d\r\nX-Request-Id: %s\r\nServer: %s\r\n\r\n" % (len(body), rid.encode(), self.server_header)
               + body)
        duration = time.perf_counter() - started
        bound = self.metrics.route(state.get(ROUTE_NAME) or "unmatched")
        bound.request(method, status, duration)
        bound.upstream(state.get(UPSTREAM_SECONDS), None)
        if access_log.isEnabledFor(logging.INFO):
            state[RESPONSE_BYTES] = len(body)
            state[REQUEST_ID] = rid
            request = _Request(method, path_text, headers, peer)
            access_log.info(access_line(state, request, _Response(status), duration))  # type: ignore[arg-type]
        return out

    async def _proxy(self, method: str, target: str, headers: CIMultiDictProxy[str], peer: str | None, rid: str,
                     state: dict[Any, Any]) -> tuple[bytes, bytes, int]:
        runtime = self.runtime
        if method not in ("GET", "HEAD"):
            raise GatewayError(405, "method_not_allowed", "The prototype proxies GET and HEAD only")
        path = parse_target(target, runtime.config.paths)
        try:
            host = parse_host(headers.get("Host", ""))
        except ValueError:
            raise GatewayError.bad_request("The Host header is not a valid host") from None
        route = runtime.router.match(method, host.name, path)
        if route is None:
            raise GatewayError(404, "not_found", "No route matches this request")
        state[ROUTE_NAME] = route.name
        claims = None
        if route.auth != "none":
            auth = headers.get("Authorization", "")
            if not auth.startswith("Bearer "):
                if route.auth == "required":
                    raise GatewayError.unauthorized("authentication_required", "Authentication credentials were not provided",
                                                    token_presented=False)
            else:
                claims = await verify_for_route(auth[7:], runtime.tokens, self.store, runtime.issuers.for_route(route))
                state[SUBJECT] = str(claims.get("sub"))
                check_requirements(route, claims)
        upstream_headers = runtime.rewrite.headers(_Request(method, "", headers, peer), route, claims, rid,  # type: ignore[arg-type]
                                                   host, ("http", host))
        if claims is not None and route.identity_jwt is not None:
            upstream_headers[route.identity_jwt.header] = runtime.signer.token_for(route, claims)
        origin = self.origins.get(route.upstream)
        if origin is None:
            origin = self.origins[route.upstream] = Origin.parse(route.upstream)
        strip = len([s for s in route.prefix.split("/") if s]) if route.strip_prefix else 0
        upstream_target = (route.upstream + path.forward_path(strip))[origin.prefix_length:] or "/"
        if path.query:
            upstream_target += "?" + path.query
        started = time.perf_counter()
        try:
            answer = await send(self.pool, origin, method, request_head(method, upstream_target, origin, upstream_headers, None),
                                None, route.timeout, chunked=False)
        except (OSError, asyncio.TimeoutError, Exception) as exc:  # noqa: BLE001 - the prototype answers 502 for all
            raise GatewayError(502, "upstream_unavailable", "The upstream service is unavailable") from exc
        finally:
            state[UPSTREAM_SECONDS] = time.perf_counter() - started
        try:
            parts = []
            while chunk := await answer.read():
                parts.append(chunk)
        finally:
            answer.close()
        drop = HOP_BY_HOP | {"content-length", "server", "x-request-id"} | connection_tokens(CIMultiDictProxy(CIMultiDict(answer.headers)))
        head = "".join(f"{k}: {v}\r\n" for k, v in answer.headers if k.lower() not in drop).encode("latin-1")
        return head, b"".join(parts), answer.status


class Connection(asyncio.Protocol):
    """One client connection: requests parsed by httptools and answered in order (no pipelining overlap)."""

    def __init__(self, app: Prototype) -> None:
        self.app = app
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.url = b""
        self.headers: list[tuple[str, str]] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass asyncio's
        peer = transport.get_extra_info("peername")
        self.peer = peer[0] if peer else None

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            assert self.transport is not None
            self.transport.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            self.transport.close()

    def on_message_begin(self) -> None:
        self.url, self.headers = b"", []

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_message_complete(self) -> None:
        assert self.transport is not None
        self.transport.pause_reading()
        method = self.parser.get_method().decode()
        keep_alive = self.parser.should_keep_alive()
        asyncio.get_running_loop().create_task(self._answer(method, self.url.decode("latin-1"),
                                                            CIMultiDictProxy(CIMultiDict(self.headers)), keep_alive))

    async def _answer(self, method: str, target: str, headers: CIMultiDictProxy[str], keep_alive: bool) -> None:
        out = await self.app.answer(method, target, headers, self.peer)
        assert self.transport is not None
        if self.transport.is_closing():
            return
        self.transport.write(out)
        if keep_alive:
            self.transport.resume_reading()
        else:
            self.transport.close()


async def serve(config_path: str, port: int) -> None:
    app = Prototype(config_path)
    await app.store.start()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Connection(app), "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    configure_logging("info")
    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass
    asyncio.run(serve(args.config, args.port))


if __name__ == "__main__":
    main()

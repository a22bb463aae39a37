"""The public listener's one request handler, for aiohttp's low-level server (``web.Server``).

``create_app`` builds an ordinary ``web.Application``: one catch-all route to
``pipeline.dispatch`` behind two middlewares (``errors_and_access_log``, then
``limits.admission``). Serving it through ``Application._handle`` costs, per
request, a router resolve (a regex over the path and a fresh match-info
object), the match-info's app stack, a cached lookup of the middleware chain
and one wrapper frame per middleware: nothing that can differ between two
requests, since every request takes the same route through the same chain.

``front_handler(app)`` does the same work with that part computed once: one
frozen match-info (so ``request.app``, the prepare hook and the app's keys work
as before), the ``Expect`` handling ``_handle`` does before the middlewares,
then the two middlewares called directly around ``dispatch``. Requests still
are ``web.Request`` objects made by the app's own factory (``AppRunner``), the
app still starts and stops the store, the upstream pool and the rest
(``cleanup_ctx``), and the gateway's own endpoints, CORS preflights, decision
requests and websocket upgrades run the same code as proxied requests. The
figure that decided this is in docs/performance.md ("Levers, measured").
"""
from __future__ import annotations

from typing import Awaitable, Callable

from aiohttp import hdrs, web
from aiohttp.web_urldispatcher import UrlMappingMatchInfo

from gateway.limits import admission
from gateway.middleware import errors_and_access_log
from gateway.pipeline import dispatch

__all__ = ["FrontHandler", "front_handler"]

FrontHandler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]


async def _admitted(request: web.Request) -> web.StreamResponse:
    return await admission(request, dispatch)


def front_handler(app: web.Application) -> FrontHandler:
    """The handler for ``app`` (built by ``create_app``, started by its runner): its one route, its two middlewares."""
    (route,) = app.router.routes()  # the catch-all: create_app adds no other
    match_info = UrlMappingMatchInfo({}, route)  # no request reads match_info's values: one serves them all
    match_info.add_app(app)
    match_info.freeze()
    expect = route.handle_expect_header

    async def handle(request: web.BaseRequest) -> web.StreamResponse:
        assert isinstance(request, web.Request)  # the app's request factory (AppRunner) made it
        request._match_info = match_info
        if request.headers.get(hdrs.EXPECT):  # as Application._handle: 100 Continue, or 417 for another expectation
            response = await expect(request)
            await request.writer.drain()
            if response is not None:
                return response
        return await errors_and_access_log(request, _admitted)

    return handle

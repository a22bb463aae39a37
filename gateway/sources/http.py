"""The ``http`` source: the legacy service checks the password itself, at its own login endpoint.

The gateway POSTs the login and password (JSON or a form) to ``url``; an
answer with one of ``accept_status`` means the password is right, and claims
are taken from its JSON body by dotted paths (``user.email``). Any other 4xx
means wrong; 5xx, a timeout or a refused connection mean the service cannot
answer (503 ``identity_unavailable``). A refusal is padded to the time a
typical success takes, so a service that answers "no such user" faster than
"wrong password" gives nothing away. Redirects are never followed (the
credentials go to ``url`` and nowhere else), and nothing of a request or an
answer body is ever logged: only status codes.

The endpoint knows the password; it cannot say whether a user still exists
without it. With ``user_url`` (a GET that answers 200 with the user, 404 when
it is gone or inactive) refresh re-reads the user like every other source;
without it, refresh keeps the claims of the login (carried in the signed
refresh token) until the refresh token expires.
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any, Mapping
from urllib.parse import quote

import aiohttp

from gateway.config.sources import HttpSettings
from gateway.observe.logs import warn_repeated
from gateway.sources.base import Candidate, SourceUnavailable, user_claims
from gateway.sources.users import User

__all__ = ["HttpSource", "dotted"]

log = logging.getLogger("gateway.sources")
MAX_ANSWER = 1024 * 1024
_MISSING = object()


def dotted(document: Any, path: str) -> Any:
    """The value at ``a.b.0.c`` in a JSON document, or None."""
    node = document
    for part in path.split("."):
        if isinstance(node, Mapping):
            node = node.get(part, _MISSING)
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
        if node is _MISSING:
            return None
    return node


class HttpSource:
    kind = "http"

    def __init__(self, settings: HttpSettings, name: str) -> None:
        self.settings = settings
        self.name = name
        self.timeout = settings.timeout
        self.cache_ttl = settings.cache
        self.rereads = settings.user_url is not None
        self._session: aiohttp.ClientSession | None = None
        self._accepted = 0.0  # moving average of accepted checks, seconds: refusals are padded to it

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                connector=aiohttp.TCPConnector(limit=64),
                headers=self.settings.headers,
            )
        return self._session

    def _user(self, login: str, answer: Any) -> User | None:
        subject = dotted(answer, self.settings.subject) if self.settings.subject else login
        if not isinstance(subject, (str, int)) or subject == "":
            warn_repeated(log, "user source %s: the answer has no usable subject at %r", self.name,
                          self.settings.subject)
            return None
        values = {claim: dotted(answer, path) for claim, path in self.settings.claims.items()}
        return User(str(subject), "", user_claims(values))

    async def _request(self, method: str, url: str, **kwargs: Any) -> tuple[int, Any]:
        try:
            async with self._client().request(method, url, allow_redirects=False, **kwargs) as response:
                body = await response.content.read(MAX_ANSWER)
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            warn_repeated(log, "user source %s: %s failed (%s)", self.name, method, type(exc).__name__)
            raise SourceUnavailable(self.name) from None
        if status >= 500:
            warn_repeated(log, "user source %s: the service answered %d", self.name, status)
            raise SourceUnavailable(self.name)
        try:
            document = json.loads(body) if body else None
        except ValueError:
            document = None
        return status, document

    async def find(self, login: str, by: str) -> Candidate | None:
        """Every login may be the service's: only it can tell, and only with the password."""

        async def check(password: str) -> User | None:
            fields = {self.settings.username_field: login, self.settings.password_field: password}
            body = {"json": fields} if self.settings.body == "json" else {"data": fields}
            started = time.perf_counter()
            status, answer = await self._request("POST", self.settings.url, **body)
            elapsed = time.perf_counter() - started
            if status in self.settings.accept_status:
                self._accepted = elapsed if self._accepted == 0 else 0.8 * self._accepted + 0.2 * elapsed
                return self._user(login, answer)
            # A 4xx: wrong password, unknown or inactive user. Many services answer "unknown" before hashing
            # anything; padding every refusal to a typical success hides that from the client's clock.
            await asyncio.sleep(max(0.0, min(self._accepted, self.timeout * 0.8) - elapsed))
            return None

        return Candidate(check)

    async def lookup(self, username: str) -> User | None:
        if self.settings.user_url is None:
            return None
        status, answer = await self._request("GET", self.settings.user_url.replace("{login}", quote(username, safe="")))
        if status == 200:
            user = self._user(username, answer)
            return user if user is not None and user.username == username else None
        if status in (404, 410):
            return None
        warn_repeated(log, "user source %s: user_url answered %d (check the service key)", self.name, status,
                          level=logging.ERROR)
        raise SourceUnavailable(self.name)

    async def probe(self) -> str:
        status, _ = await self._request("GET", self.settings.url)  # any answer below 500 (even 405) means it is there
        return f"login endpoint answered {status}"

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def names(self) -> list[str]:
        return []

    def held_hashes(self) -> list[str]:
        return []  # the password is checked remotely

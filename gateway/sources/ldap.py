"""The ``ldap`` source: a directory checks the password by a bind (ldap3, in a bounded thread pool).

Two modes. Search, then bind (``user_base``): a service account (or an
anonymous bind) finds the user's entry with ``user_filter``, and a bind as that
entry checks the password. Direct bind (``user_dn``): the entry's DN is built
from the login and the bind is the check. Either way a successful bind's
password never leaves the bind; groups found with ``group_filter`` become
``roles`` (through ``role_map``), and ``attributes`` become claims.

Logins are escaped for where they go (RFC 4515 in filters, RFC 4514 in DNs),
so ``*`` or ``)(uid=*`` is a login like any other. An empty password is
refused before any bind (an LDAP bind without a password is anonymous, and
would "succeed"). ldap3 is synchronous: every call runs in the source's own
pool of ``pool_size`` threads, each with its own service connection.
"""
from __future__ import annotations

import asyncio
import logging
import math
import queue
import secrets
import ssl
import struct
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, TypeVar
from urllib.parse import urlsplit

import ldap3
from ldap3.core.exceptions import LDAPException
from ldap3.utils.conv import escape_filter_chars
from ldap3.utils.dn import escape_rdn

from gateway.config.sources import LdapSettings
from gateway.observe.logs import warn_repeated
from gateway.sources.base import Candidate, SourceUnavailable, user_claims
from gateway.sources.users import User

__all__ = ["LdapSource"]

log = logging.getLogger("gateway.sources")
T = TypeVar("T")
INVALID_CREDENTIALS = 49


def _first(value: Any) -> Any:
    if isinstance(value, list):
        return value[0] if len(value) == 1 else (value or None)
    return value


class LdapSource:
    kind = "ldap"

    def __init__(self, settings: LdapSettings, name: str) -> None:
        self.settings = settings
        self.name = name
        self.timeout = settings.timeout
        self.cache_ttl = settings.cache
        self.rereads = settings.user_base is not None or settings.bind_dn is not None
        url = urlsplit(settings.url)
        secure = url.scheme == "ldaps"
        tls = None
        if secure or settings.start_tls:
            ca = str(settings.ca_file) if settings.ca_file else None
            tls = ldap3.Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=ca)
        self.server = ldap3.Server(
            url.hostname or "127.0.0.1", port=url.port or (636 if secure else 389), use_ssl=secure, tls=tls,
            connect_timeout=settings.timeout, get_info=ldap3.NONE,
            mode=ldap3.IP_SYSTEM_DEFAULT,  # never remember an address as "unavailable": a restarted directory is used at once
        )
        self._threads = ThreadPoolExecutor(settings.pool_size, thread_name_prefix=f"ldap-{name}")
        self._service: queue.SimpleQueue[ldap3.Connection] = queue.SimpleQueue()
        self._attributes = [settings.username_attribute, *settings.attributes.values()]

    # -- connections (in the pool's threads) -------------------------------------------

    def _connect(self, dn: str | None, password: str | None) -> ldap3.Connection | None:
        """A bound connection, or None when the directory refused the credentials."""
        conn = ldap3.Connection(self.server, user=dn, password=password, receive_timeout=math.ceil(self.timeout),
                                auto_referrals=False, raise_exceptions=False)
        conn.open()
        if self.settings.start_tls and not conn.start_tls():
            conn.unbind()
            raise SourceUnavailable("StartTLS refused")
        if not conn.bind():
            code = conn.result.get("result") if isinstance(conn.result, dict) else None
            conn.unbind()
            if code == INVALID_CREDENTIALS:
                return None
            raise SourceUnavailable(f"bind failed ({code})")
        return conn

    def _new_service(self) -> ldap3.Connection:
        password = self.settings.bind_password.get_secret_value() if self.settings.bind_password else None
        conn = self._connect(self.settings.bind_dn, password)
        if conn is None:
            raise SourceUnavailable("the service account's bind was refused")
        return conn

    def _with_service(self, work: Callable[[ldap3.Connection], T]) -> T:
        """Run ``work`` on a pooled service connection; one that went stale (a directory restart) is replaced once."""
        try:
            conn, pooled = self._service.get_nowait(), True
        except queue.Empty:
            conn, pooled = self._new_service(), False
        try:
            result = work(conn)
        except LDAPException:
            conn.unbind()  # a connection that failed mid-operation is not reused
            if not pooled:
                raise
            conn = self._new_service()
            try:
                result = work(conn)
            except BaseException:
                conn.unbind()
                raise
        except BaseException:
            conn.unbind()
            raise
        self._service.put(conn)
        return result

    def _search(self, conn: ldap3.Connection, base: str, filter_: str, attributes: list[str], scope: Any) -> list[Any]:
        if not conn.search(base, filter_, scope, attributes=attributes, size_limit=50):
            code = conn.result.get("result") if isinstance(conn.result, dict) else None
            if code in (0, 32):  # success with no entries, noSuchObject
                return []
            raise SourceUnavailable(f"search failed ({code})")
        return list(conn.entries)

    def _entry(self, conn: ldap3.Connection, login: str) -> tuple[str, dict[str, Any]] | None:
        if self.settings.user_base is not None:
            filter_ = self.settings.user_filter.replace("{login}", escape_filter_chars(login))
            found = self._search(conn, self.settings.user_base, filter_, self._attributes, ldap3.SUBTREE)
        else:
            assert self.settings.user_dn is not None
            dn = self.settings.user_dn.replace("{login}", escape_rdn(login))
            found = self._search(conn, dn, "(objectClass=*)", self._attributes, ldap3.BASE)
        if len(found) != 1:
            return None
        return found[0].entry_dn, found[0].entry_attributes_as_dict

    def _user(self, conn: ldap3.Connection, dn: str, attrs: dict[str, Any]) -> User | None:
        username = _first(attrs.get(self.settings.username_attribute))
        if not isinstance(username, str) or not username:
            return None
        values: dict[str, Any] = {claim: _first(attrs.get(attr)) for claim, attr in self.settings.attributes.items()}
        if self.settings.group_base is not None:
            filter_ = self.settings.group_filter.replace("{dn}", escape_filter_chars(dn))
            groups = self._search(conn, self.settings.group_base, filter_, [self.settings.group_attribute], ldap3.SUBTREE)
            names = [str(_first(g.entry_attributes_as_dict.get(self.settings.group_attribute))) for g in groups]
            mapping = self.settings.role_map
            roles = [mapping[n] for n in names if n in mapping] if mapping else names
            values["roles"] = sorted(set(roles))
        return User(username, "", user_claims(values))

    def _check(self, login: str, entry: tuple[str, dict[str, Any]] | None, password: str) -> User | None:
        """The bind is the password check; ``entry`` is the searched entry (None: direct bind)."""
        if not password:
            return None
        if entry is not None:
            dn = entry[0]
        else:
            assert self.settings.user_dn is not None
            dn = self.settings.user_dn.replace("{login}", escape_rdn(login))
        conn = self._connect(dn, password)
        if conn is None:
            return None
        try:
            if entry is None:  # direct bind: the user reads their own entry and groups
                own = self._entry(conn, login)
                return self._user(conn, *own) if own is not None else None
        finally:
            conn.unbind()
        found = entry
        return self._with_service(lambda service: self._user(service, *found))

    # -- the source ---------------------------------------------------------------------

    async def _run(self, work: Callable[..., T], *args: Any) -> T:
        try:
            return await asyncio.get_running_loop().run_in_executor(self._threads, work, *args)
        except SourceUnavailable as exc:
            warn_repeated(log, "user source %s: %s", self.name, str(exc))
            raise
        except (LDAPException, OSError, ValueError, struct.error) as exc:
            warn_repeated(log, "user source %s: %s", self.name, type(exc).__name__)
            raise SourceUnavailable(self.name) from None

    async def find(self, login: str, by: str) -> Candidate | None:
        if by != "username":
            return None
        if self.settings.user_base is None:
            return Candidate(lambda password: self._run(self._check, login, None, password))
        entry = await self._run(self._with_service, lambda conn: self._entry(conn, login))
        if entry is None:
            return None
        return Candidate(lambda password: self._run(self._check, login, entry, password), decoy=self._decoy)

    async def _decoy(self, password: str) -> None:
        """A bind as an entry that does not exist: what an unknown login costs, like a wrong password."""
        assert self.settings.user_base is not None
        nobody = f"{self.settings.username_attribute}=gateway-nobody-{secrets.token_hex(8)},{self.settings.user_base}"
        await self._run(self._bind_and_drop, nobody, password or "x")

    def _bind_and_drop(self, dn: str, password: str) -> None:
        conn = self._connect(dn, password)
        if conn is not None:
            conn.unbind()

    async def lookup(self, username: str) -> User | None:
        if not self.rereads:
            return None

        def read(conn: ldap3.Connection) -> User | None:
            entry = self._entry(conn, username)
            return self._user(conn, *entry) if entry is not None else None

        user = await self._run(self._with_service, read)
        return user if user is not None and user.username == username else None

    async def probe(self) -> str:
        await self._run(self._with_service, lambda conn: self._search(conn, "", "(objectClass=*)", [], ldap3.BASE))
        if self.settings.user_base is not None:
            await self._run(self._with_service, lambda conn: self._entry(conn, "gateway-probe"))
            return "bound and searched"
        return "connected"

    async def close(self) -> None:
        def drain() -> None:
            while True:
                try:
                    self._service.get_nowait().unbind()
                except queue.Empty:
                    return

        await asyncio.get_running_loop().run_in_executor(self._threads, drain)
        self._threads.shutdown(wait=False)

    def names(self) -> list[str]:
        return []

    def held_hashes(self) -> list[str]:
        return []  # the password is checked remotely

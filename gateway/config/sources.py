"""The ``users:`` section: an ordered list of identity sources, each a one-key mapping.

    users:
      - file: users.yaml
      - sql: {url: "postgresql://app@db:5432/app", preset: django}
      - ldap: {url: "ldaps://ldap.example.com", user_base: "ou=people,dc=example,dc=com"}
      - http: {url: "http://legacy:8000/api/login"}

Each key is described once, in the docstring under its field; docs/configuration.md's reference is
generated from these (``python -m gateway.config.reference --write``), docs/user-sources.md explains them.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from gateway.config.types import Duration, Model

__all__ = ["HttpSettings", "LdapSettings", "SourceSpec", "SqlSettings", "resolve_source_paths"]


_PLACEHOLDER = re.compile(r"(?<![:\w]):login\b")
_SQL_SCHEMES = ("postgresql", "postgres", "mysql", "mariadb", "sqlite")
MAX_CACHE = 300.0


class _Common(Model):
    timeout: Duration = 3.0
    """Every lookup, check and query (0 < t <= 60s); past it: 503 identity_unavailable."""
    cache: Duration = 0.0
    """Refresh re-reads a user at most this often (at most 5m; 0: every refresh; logins always ask the source)."""

    @field_validator("timeout")
    @classmethod
    def _timeout(cls, value: float) -> float:
        if not 0 < value <= 60:
            raise ValueError("must be between 0 and 60s")
        return value

    @field_validator("cache")
    @classmethod
    def _cache(cls, value: float) -> float:
        if value > MAX_CACHE:
            raise ValueError("at most 5m: a deactivated user must not keep refreshing for long")
        return value


def _check_query(value: str | None, where: str) -> str | None:
    if value is not None and not _PLACEHOLDER.search(value):
        raise ValueError(f"{where}: must use the :login parameter (values are never formatted into SQL)")
    return value


class SqlSettings(_Common):
    url: SecretStr
    """postgresql://, mysql:// (MariaDB too) or sqlite:///path; may hold a password, never logged."""
    preset: Literal["django", "generic"] | None = None
    """Queries for a known schema (`django`: auth_user); any key given overrides the preset's."""
    query: str | None = None
    """Returns login, password_hash, [active] and claim columns; `:login` is the parameter."""
    query_by: dict[str, str] = {}
    """Login claim (compat `login_claim`) -> query, e.g. by email."""
    roles_query: str | None = None
    """One row per role (first column)."""
    flag_roles: dict[str, str] = {}
    """Boolean column -> the role it grants, e.g. `{is_superuser: admin}`."""
    claims: dict[str, str] = {}
    """Claim -> column of `query`."""
    pool_size: int = Field(5, ge=1, le=100)
    """Connections per gateway process."""
    rehash_on_login: bool = False
    """Write an argon2id hash back after a login with an older format."""
    rehash_query: str | None = None
    """`UPDATE ... SET ... = :hash WHERE ... = :login`."""
    costliest_hash: str | None = None
    """A hash (of any throwaway password) in the costliest format the table holds, e.g. Django's `make_password("x")`: every refused login costs at least its check; absent: the gateway's own argon2id, raised when a costlier hash is met."""

    @field_validator("url")
    @classmethod
    def _url(cls, value: SecretStr) -> SecretStr:
        scheme = value.get_secret_value().partition("://")[0].split("+")[0]
        if scheme not in _SQL_SCHEMES:
            raise ValueError(f"scheme must be one of {', '.join(_SQL_SCHEMES)}")
        return value

    @model_validator(mode="after")
    def _queries(self) -> "SqlSettings":
        if self.query is None and self.preset is None:
            raise ValueError("give a query or a preset (django, generic)")
        _check_query(self.query, "query")
        _check_query(self.roles_query, "roles_query")
        for claim, query in self.query_by.items():
            _check_query(query, f"query_by.{claim}")
        if self.rehash_query is not None and ":hash" not in self.rehash_query:
            raise ValueError("rehash_query: must use the :hash and :login parameters")
        _check_query(self.rehash_query, "rehash_query")
        if self.rehash_on_login and self.rehash_query is None and self.preset is None:
            raise ValueError("rehash_on_login: needs a rehash_query (or a preset)")
        return self


class LdapSettings(_Common):
    url: str
    """ldap://host[:389] or ldaps://host[:636]."""
    start_tls: bool = False
    """Upgrade ldap:// with StartTLS before any bind."""
    ca_file: Path | None = None
    """CA bundle for ldaps or StartTLS; absent: the system's."""
    bind_dn: str | None = None
    """Service account for searches; absent: anonymous search."""
    bind_password: SecretStr | None = None
    """The service account's password; goes with `bind_dn`."""
    user_base: str | None = None
    """Search, then bind: where users are searched."""
    user_filter: str = "(uid={login})"
    """`{login}` is filter-escaped (RFC 4515)."""
    user_dn: str | None = None
    """Direct bind instead of a search, e.g. `uid={login},ou=people,dc=example,dc=com` (DN-escaped)."""
    username_attribute: str = "uid"
    """The attribute that becomes `sub`."""
    group_base: str | None = None
    """Groups to roles: where groups are searched."""
    group_filter: str = "(|(member={dn})(uniqueMember={dn}))"
    """`{dn}` is the user's DN, filter-escaped."""
    group_attribute: str = "cn"
    """The group's name."""
    role_map: dict[str, str] = {}
    """Group name -> role; empty: group names are the roles."""
    attributes: dict[str, str] = {}
    """Claim -> attribute, e.g. `{email: mail, name: cn}`."""
    pool_size: int = Field(4, ge=1, le=50)
    """Threads, each with its own service connection."""

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not (value.startswith("ldap://") or value.startswith("ldaps://")):
            raise ValueError("must start with ldap:// or ldaps://")
        return value

    @field_validator("ca_file")
    @classmethod
    def _ca_file(cls, value: Path | None) -> Path | None:
        # read by ldap3 when the source is built: a missing file would end `gateway check` in a traceback
        if value is not None and not value.is_file():
            raise ValueError("no such file")
        return value

    @model_validator(mode="after")
    def _mode(self) -> "LdapSettings":
        if (self.user_base is None) == (self.user_dn is None):
            raise ValueError("give user_base (search, then bind) or user_dn (direct bind), not both")
        if self.user_dn is not None and "{login}" not in self.user_dn:
            raise ValueError("user_dn: must contain {login}")
        if self.start_tls and self.url.startswith("ldaps://"):
            raise ValueError("start_tls: only with ldap:// (ldaps:// is TLS already)")
        if (self.bind_dn is None) != (self.bind_password is None):
            raise ValueError("bind_dn and bind_password go together")
        return self


class HttpSettings(_Common):
    url: str
    """The legacy service's login or check endpoint (POST)."""
    body: Literal["json", "form"] = "json"
    """How the credentials are sent."""
    username_field: str = "username"
    """The login name's field."""
    password_field: str = "password"
    """The password's field."""
    accept_status: tuple[int, ...] = (200,)
    """Answers meaning "right password"; any other 4xx: wrong."""
    subject: str | None = None
    """Dotted path of the username in the answer; absent: the login as sent."""
    claims: dict[str, str] = {}
    """Claim -> dotted path in the JSON answer."""
    user_url: str | None = None
    """For refresh: GET, `{login}` URL-encoded; 200 = the user (same paths), 404 = gone."""
    headers: dict[str, str] = {}
    """Sent with every request, e.g. a service key; never logged."""

    @field_validator("url", "user_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not (value.startswith("http://") or value.startswith("https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value

    @field_validator("user_url")
    @classmethod
    def _user_url(cls, value: str | None) -> str | None:
        if value is not None and "{login}" not in value:
            raise ValueError("must contain {login}")
        return value


class SourceSpec(Model):
    """One entry of ``users:``: exactly one of file, sql, ldap, http."""

    file: Path | None = None
    """A users file, as `users_file` reads it."""
    sql: SqlSettings | None = None
    """A legacy application's database table."""
    ldap: LdapSettings | None = None
    """An LDAP directory."""
    http: HttpSettings | None = None
    """A legacy application's own login endpoint."""

    @model_validator(mode="after")
    def _one(self) -> "SourceSpec":
        given = [k for k in ("file", "sql", "ldap", "http") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("each entry is exactly one of file, sql, ldap, http")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in ("file", "sql", "ldap", "http") if getattr(self, k) is not None)


def resolve_source_paths(raw: dict[str, Any], base_dir: Path) -> None:
    """Relative ``file:`` paths and ``sqlite:///relative.db`` are relative to the configuration file."""
    entries = raw.get("users")
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, dict):
            continue
        if isinstance(entry.get("file"), str):
            entry["file"] = str(base_dir / entry["file"])
        sql = entry.get("sql")
        if isinstance(sql, dict) and isinstance(sql.get("url"), str):
            url: str = sql["url"]
            if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
                sql["url"] = "sqlite:///" + str(base_dir / url[len("sqlite:///"):])
        ldap = entry.get("ldap")
        if isinstance(ldap, dict) and isinstance(ldap.get("ca_file"), str):
            ldap["ca_file"] = str(base_dir / ldap["ca_file"])

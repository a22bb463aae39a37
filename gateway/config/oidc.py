"""``oidc``: sign-in through OpenID Providers (authorization code + PKCE), then the gateway's own session."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import SecretStr, field_validator, model_validator
from yarl import URL

from gateway.config.tokens import EXTERNAL_ALGORITHMS, LOGIN_CLAIMS, TOKEN_CLAIMS, check_hs256_secret
from gateway.config.types import Duration, Model, base_url, one_of

PROVIDER_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
# Parameters of the authorization request the gateway sets itself; `extra_params` may not override them.
RESERVED_PARAMS = frozenset({
    "response_type", "client_id", "redirect_uri", "scope", "state", "nonce", "code_challenge",
    "code_challenge_method", "request", "request_uri", "response_mode",
})
CLIENT_AUTH = Literal["client_secret_basic", "client_secret_post", "private_key_jwt"]


def is_loopback_url(url: URL) -> bool:
    host = url.host or ""
    return host in {"localhost", "::1"} or host.startswith("127.")


def origin_of(value: str) -> str:
    """``scheme://host[:port]`` of an absolute http(s) URL, lowercased; ValueError otherwise."""
    url = URL(value)
    if url.scheme not in {"http", "https"} or not url.host or url.user or url.password:
        raise ValueError(f"{value!r} is not an absolute http(s) URL")
    return str(url.origin()).lower()


class OidcProvider(Model):
    """One OpenID Provider users may sign in with (``oidc.providers.<name>``)."""

    issuer: str
    """The provider's issuer URL exactly as its discovery document and ID tokens name it; discovery is `<issuer>/.well-known/openid-configuration`."""
    client_id: str
    """The gateway's client id at the provider; ID tokens must list it in `aud`."""
    client_secret: SecretStr | None = None
    """The client secret (`client_secret_basic` or `client_secret_post`)."""
    client_secret_file: Path | None = None
    """A file holding the client secret, instead of `client_secret`."""
    private_key_file: Path | None = None
    """PEM private key for `private_key_jwt` client authentication (RFC 7523); its public half is registered at the provider."""
    private_key_id: str | None = None
    """The `kid` the provider knows the private key by; required with `private_key_file`."""
    private_key_algorithm: Literal["RS256", "PS256", "ES256"] = "RS256"
    """The algorithm of the `private_key_jwt` client assertion."""
    client_auth: CLIENT_AUTH | None = None
    """How the gateway authenticates at the token endpoint; absent: `private_key_jwt` with a private key, else `client_secret_basic`."""
    scopes: tuple[str, ...] = ("openid", "email", "profile")
    """Scopes requested; must include `openid`."""
    claims: dict[str, str] = {"email": "email", "name": "name"}
    """Gateway claim -> dotted path in the ID token (then userinfo), e.g. `{groups: realm_access.roles}`; only these claims reach the session."""
    allowed_email_domains: tuple[str, ...] = ()
    """If set, the verified `email` must end in `@` + one of these domains; empty: any."""
    allowed_groups: tuple[str, ...] = ()
    """If set, the mapped `groups` claim must contain one of these; empty: any."""
    allow_unverified_email: bool = False
    """Accept an `email` whose `email_verified` is not true (it is dropped otherwise; never with `allowed_email_domains`)."""
    require_user_source: bool = False
    """The user must also exist (and be active) in the configured user sources; the session is then that user's."""
    user_source_claim: str = "email"
    """With `require_user_source`: the ID-token claim (dotted path) whose value is the username in the user sources."""
    display_name: str | None = None
    """The name on the sign-in page; absent: the provider's name."""
    end_session: bool = False
    """Logout also sends the browser to the provider's `end_session_endpoint` (RP-initiated logout) with `id_token_hint`."""
    algorithms: tuple[Literal[EXTERNAL_ALGORITHMS], ...] = ("RS256", "PS256", "ES256")  # type: ignore[valid-type]
    """ID-token signature algorithms accepted (asymmetric only: never `none`, never HS*)."""
    leeway: Duration = 60
    """Clock skew tolerated on the ID token's `exp`, `iat` and `nbf`."""
    max_id_token_age: Duration = 600
    """Refuse ID tokens issued (`iat`) longer ago than this."""
    userinfo: bool = False
    """Also read the userinfo endpoint; its `sub` must match, and claims missing from the ID token are taken from it."""
    extra_params: dict[str, str] = {}
    """More authorization-request parameters, e.g. `{prompt: select_account}` or Google's `{hd: example.com}`."""
    allow_http: bool = False
    """Allow an http:// issuer beyond loopback (a trusted network only)."""
    fetch_timeout: Duration | None = None
    """Timeout of each call to this provider; absent: `oidc.timeout`."""
    trust_authentication: bool = False
    """Take how and when the provider signed the user in from its ID token: `amr` (RFC 8176 values only), `auth_time`, and `acr` when it names a level of `second_factor.levels`; false: the session's `amr` is empty and its `auth_time` is the gateway's sign-in, so a route's level is met only by a factor at the gateway."""
    acr_values: dict[str, str] = {}
    """The provider's own `acr` value for a level of `second_factor.levels` where its names differ, e.g. Keycloak's `{mfa: gold}` or a URI: a step-up asks the provider for that value (`acr_values`), and an ID token's `acr` counts as the level only when it is that value. A level not listed goes by its own name. Values are distinct (one provider value, one level)."""

    @field_validator("issuer")
    @classmethod
    def _issuer(cls, value: str) -> str:
        return base_url(value)

    @field_validator("acr_values")
    @classmethod
    def _acr_values(cls, value: dict[str, str]) -> dict[str, str]:
        if any(not v or any(c.isspace() for c in v) for v in value.values()):
            raise ValueError("each provider acr value is one non-empty token (acr_values is space-separated)")
        if len(set(value.values())) != len(value):
            raise ValueError("two levels share a provider acr value: an ID token's acr could not say which level it met")
        return value

    def level_acr(self, level: str) -> str:
        """What this provider calls ``level``."""
        return self.acr_values.get(level, level)

    def level_of(self, acr: str) -> str | None:
        """The level an ID token's ``acr`` names at this provider (None: none, or a level it calls otherwise)."""
        for level, value in self.acr_values.items():
            if value == acr:
                return level
        return None if acr in self.acr_values else acr

    @field_validator("scopes")
    @classmethod
    def _scopes(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if "openid" not in value:
            raise ValueError("must include openid")
        if any(not re.match(r"^[\x21\x23-\x5b\x5d-\x7e]+$", s) for s in value):
            raise ValueError("a scope is printable ASCII without spaces, quotes or backslashes")
        return value

    @field_validator("claims")
    @classmethod
    def _claims(cls, value: dict[str, str]) -> dict[str, str]:
        for target, source in value.items():
            if target in TOKEN_CLAIMS or target in LOGIN_CLAIMS or target == "sub":
                raise ValueError(f"{target!r} is set by the gateway and cannot be mapped")
            if not isinstance(source, str) or not source:
                raise ValueError(f"{target}: the value must be a claim name or dotted path")
        return value

    @field_validator("extra_params")
    @classmethod
    def _extra_params(cls, value: dict[str, str]) -> dict[str, str]:
        reserved = sorted(RESERVED_PARAMS & value.keys())
        if reserved:
            raise ValueError(f"{reserved} are set by the gateway")
        return value

    @field_validator("allowed_email_domains")
    @classmethod
    def _domains(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(d.lower().lstrip("@") for d in value)

    @model_validator(mode="after")
    def _client(self) -> "OidcProvider":
        """The issuer and how this client authenticates to it."""
        url = URL(self.issuer)
        if url.scheme == "http" and not (self.allow_http or is_loopback_url(url)):
            raise ValueError("issuer: must be https (or set allow_http: true for a trusted network)")
        if one_of(self, ("client_secret", "client_secret_file", "private_key_file")) != 1:
            raise ValueError("give one of client_secret, client_secret_file or private_key_file")
        if (self.private_key_file is None) != (self.private_key_id is None):
            raise ValueError("private_key_id: required with private_key_file (and only with it)")
        if self.client_auth == "private_key_jwt" and self.private_key_file is None:
            raise ValueError("client_auth: private_key_jwt needs private_key_file")
        if self.client_auth not in (None, "private_key_jwt") and self.private_key_file is not None:
            raise ValueError("client_auth: a client secret method needs client_secret or client_secret_file")
        if self.client_secret is not None and not self.client_secret.get_secret_value():
            raise ValueError("client_secret: empty")
        return self

    @model_validator(mode="after")
    def _acceptance(self) -> "OidcProvider":
        """What of the provider's tokens and claims is accepted, and how long a fetch may take."""
        if not self.algorithms:
            raise ValueError("algorithms: list at least one")
        if self.allowed_email_domains and self.allow_unverified_email:
            raise ValueError("allow_unverified_email: not with allowed_email_domains (anyone could claim the domain)")
        if self.allowed_email_domains and "email" not in self.claims:
            raise ValueError("allowed_email_domains: needs the email claim mapped in claims")
        if self.allowed_groups and "groups" not in self.claims:
            raise ValueError("allowed_groups: needs the groups claim mapped in claims (e.g. groups: groups)")
        if self.fetch_timeout is not None and self.fetch_timeout <= 0:
            raise ValueError("fetch_timeout: must be positive")
        return self

    @property
    def auth_method(self) -> str:
        if self.client_auth is not None:
            return self.client_auth
        return "private_key_jwt" if self.private_key_file is not None else "client_secret_basic"


class Oidc(Model):
    """Sign-in through OpenID Providers; empty `providers`: off."""

    providers: dict[str, OidcProvider] = {}
    """Providers by name (a-z 0-9 _ -, up to 32): the name is in the login path and the session's subject prefix."""
    allowed_redirect_origins: tuple[str, ...] = ()
    """Origins besides `public_url`'s that `next` may send the browser to after sign-in (a SPA on another host)."""
    post_logout_redirect_uris: tuple[str, ...] = ()
    """Absolute URLs a provider may send the browser back to after its logout (also registered at the provider)."""
    timeout: Duration = 10
    """Bound of each call to a provider (discovery, token, userinfo, JWKS): 504 past it."""
    state_lifetime: Duration = 600
    """How long a started sign-in may take at the provider (state, nonce and PKCE verifier live this long)."""
    code_lifetime: Duration = 60
    """How long the one-time code of `deliver=code` may wait for `POST <oidc>/exchange`."""
    discovery_ttl: Duration = 3600
    """How long a provider's discovery document is cached."""
    state_secret: SecretStr | None = None
    """Signs the sign-in binding cookie, at least 32 bytes; absent: `cookies.csrf_secret`, else `tokens.secret`."""

    @field_validator("allowed_redirect_origins")
    @classmethod
    def _origins(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        out = []
        for origin in value:
            if origin_of(origin) != origin.lower().rstrip("/"):
                raise ValueError(f"{origin!r}: an origin is scheme://host[:port] without a path")
            out.append(origin_of(origin))
        return tuple(out)

    @field_validator("post_logout_redirect_uris")
    @classmethod
    def _post_logout(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for uri in value:
            origin_of(uri)
            if URL(uri).fragment:
                raise ValueError(f"{uri!r}: no fragment")
        return value

    @field_validator("state_secret")
    @classmethod
    def _state_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            check_hs256_secret(value.get_secret_value().encode())
        return value

    @model_validator(mode="after")
    def _consistent(self) -> "Oidc":
        bad = [n for n in self.providers if not PROVIDER_NAME.match(n)]
        if bad:
            raise ValueError(f"providers: {bad} are not usable names (a-z 0-9 _ -, up to 32, lowercase)")
        for name, value in (("timeout", self.timeout), ("state_lifetime", self.state_lifetime),
                            ("code_lifetime", self.code_lifetime), ("discovery_ttl", self.discovery_ttl)):
            if value <= 0:
                raise ValueError(f"{name}: must be positive")
        if self.code_lifetime > 600:
            raise ValueError("code_lifetime: at most 10m (the code stands for a whole session)")
        return self

    @property
    def enabled(self) -> bool:
        return bool(self.providers)

"""What serves requests: the ``Runtime`` built from one configuration, and the process-wide ``Gateway``.

A reload builds a new ``Runtime`` and swaps it in whole; a request keeps the
one it started with. The ``Gateway`` holds what outlives configurations: the
store, the upstream pool, metrics and the lifecycle.
"""
from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from gateway.auth.admin_keys import AdminKeys
from gateway.auth.admission_cache import AdmissionCache
from gateway.auth.basic import BasicAuth
from gateway.auth.cookies import CookieMode
from gateway.auth.issuers import Issuers
from gateway.auth.keys import KeyRing
from gateway.auth.oidc_flow import SignInFlow
from gateway.auth.service_keys import ServiceKeys
from gateway.auth.sessions import AuthEvents, AuthService
from gateway.auth.throttle import LoginThrottle
from gateway.auth.tokens import TokenService
from gateway.config import GatewayConfig
from gateway.cors import CorsPolicy
from gateway.decision.front import Front
from gateway.dialects import ErrorStyle, error_style
from gateway.endpoints.factors import factor_endpoints
from gateway.endpoints.manage import manage_endpoints
from gateway.endpoints.oidc import oidc_endpoints
from gateway.endpoints.signin import signin_endpoints
from gateway.endpoints.step_up import step_up_endpoints
from gateway.endpoints.table import Endpoint, default_endpoints
from gateway.endpoints.tokens import compat_endpoints, dialects
from gateway.endpoints.wellknown import wellknown_endpoints
from gateway.errors import ErrorCode, GatewayError
from gateway.factors.flow import FactorGate
from gateway.factors.service_keys import ServiceKeyTable
from gateway.factors.store import CredentialStore
from gateway.lifecycle import Lifecycle
from gateway.net import is_loopback
from gateway.observe.metrics import Metrics, metrics_handler
from gateway.observe.tracing import Tracer
from gateway.routing import Router
from gateway.sources.chain import SourceEvents, UserChain
from gateway.sources.registry import build_chain
from gateway.sources.users import UserDirectory
from gateway.stores import Store
from gateway.upstream.headers import HeaderRewrite, client_boundary
from gateway.upstream.http import Upstream
from gateway.upstream.signed_identity import IdentitySigner

__all__ = ["GATEWAY", "RUNTIME", "Gateway", "Runtime"]


@dataclass(frozen=True, slots=True)
class Runtime:
    """Everything derived from one configuration; replaced whole on reload, never mutated."""

    config: GatewayConfig
    users: UserChain
    tokens: TokenService
    auth: AuthService
    router: Router
    rewrite: HeaderRewrite
    endpoints: dict[str, Endpoint]
    issuers: Issuers
    signer: IdentitySigner
    errors: ErrorStyle = ErrorStyle()  # how proxied routes' errors look (compat.errors)
    cookies: CookieMode | None = None  # cookie mode (cookies.enabled)
    cors: CorsPolicy | None = None  # cross-origin policy (cors.allow_origins)
    oidc: SignInFlow | None = None  # sign-in through OpenID Providers (oidc.providers)
    decision: Front | None = None  # decision mode (decision)
    admin_keys: AdminKeys = AdminKeys()  # who may call the admin API (admin.keys, admin.keys_file); none: it is off
    basic: BasicAuth | None = None  # HTTP Basic and its verified pairs (routes with auth: basic)
    factors: FactorGate | None = None  # second factors at login (second_factor)
    credentials: CredentialStore | None = None  # the credentials database (credentials): factors and service keys
    service_keys: ServiceKeys | None = None  # machines' keys (service_keys)

    @classmethod
    def build(
        cls,
        config: GatewayConfig,
        store: Store,
        users: UserDirectory | UserChain | None = None,
        events: AuthEvents | None = None,
    ) -> "Runtime":
        source_events = events if isinstance(events, SourceEvents) else None
        if not isinstance(users, UserChain):  # a users file given whole (tests), or the config's sources
            users = build_chain(config, source_events, directory=users)
        elif source_events is not None:
            users.events = source_events
        keys = KeyRing.from_config(config.tokens)
        tokens = TokenService(config.tokens, keys)
        throttle = None
        if config.login_throttle.enabled:
            throttle = LoginThrottle(config.login_throttle, store)
        boundary = client_boundary(config)
        cookies = None
        if config.cookies.enabled:
            cookies = CookieMode(config.cookies, config.cookies.csrf_key(config.tokens), config.tokens.refresh_lifetime)
        oidc = SignInFlow(config, events) if config.oidc.enabled else None
        auth = AuthService(config.tokens, tokens, users, store, throttle, events=events)
        credentials = CredentialStore.from_config(config.credentials) if config.credentials is not None else None
        factors = _factors(config, store, credentials)
        service_keys = None
        if config.service_keys is not None and credentials is not None:
            service_keys = ServiceKeys(config.service_keys, ServiceKeyTable(credentials.db))
        auth.factors = factors
        return cls(
            config=config,
            users=users,
            tokens=tokens,
            auth=auth,
            router=Router(config.routes, case_sensitive=config.paths.case_sensitive, networks=config.networks),
            rewrite=HeaderRewrite(boundary),
            endpoints={
                **default_endpoints(config.endpoints, auth),
                **wellknown_endpoints(config, keys),
                **compat_endpoints(config, cookies, auth),
                **ops_endpoints(config),
                **signin_endpoints(config, cookies),
                **(oidc_endpoints(config, oidc, cookies, dialects(config, cookies, auth)[0]) if oidc is not None else {}),
                **(factor_endpoints(config, factors, auth, cookies) if factors is not None else {}),
                **(step_up_endpoints(config, factors, auth, cookies) if factors is not None else {}),
                **(manage_endpoints(config, factors, auth, cookies) if factors is not None else {}),
            },
            issuers=Issuers(config),
            signer=IdentitySigner(keys, config.tokens.issuer),
            errors=error_style(config.compat.errors),
            cookies=cookies,
            cors=_cors(config),
            oidc=oidc,
            decision=Front(config.decision, boundary) if config.decision is not None else None,
            admin_keys=AdminKeys.from_config(config.admin),
            basic=(BasicAuth(config.basic_auth, config.tokens, users, throttle)
                   if any(r.auth == "basic" for r in config.routes) else None),
            factors=factors,
            credentials=credentials,
            service_keys=service_keys,
        )

    def adopt_credentials(self, running: "Runtime") -> None:
        """A reload: keep the running process's credentials database (one pool per process, migrated on start)."""
        if self.credentials is None or running.credentials is None:
            return
        if self.factors is not None:
            self.factors.credentials = running.credentials
        if self.service_keys is not None:
            self.service_keys.table = ServiceKeyTable(running.credentials.db)
        object.__setattr__(self, "credentials", running.credentials)


def _factors(config: GatewayConfig, store: Store, credentials: CredentialStore | None) -> FactorGate | None:
    if config.second_factor is None or credentials is None:
        return None
    return FactorGate(config.second_factor, credentials, store, store, public_url=config.public_url)


def _cors(config: GatewayConfig) -> CorsPolicy | None:
    if not config.cors.enabled:
        return None
    csrf = (config.cookies.csrf_header,) if config.cookies.enabled else ()
    return CorsPolicy(config.cors, extra_headers=csrf)


def ops_endpoints(config: GatewayConfig) -> dict[str, Endpoint]:
    """/metrics on the main listener, unless an admin listener serves it; loopback callers only unless public."""
    if not config.metrics.enabled or config.admin is not None:
        return {}
    if config.metrics.public:
        return {config.metrics.path: Endpoint(frozenset({"GET", "HEAD"}), metrics_handler)}

    async def local_metrics(request: web.Request) -> web.StreamResponse:
        if not _direct_loopback(request):
            raise GatewayError(404, ErrorCode.NOT_FOUND, "No route matches this request")
        return await metrics_handler(request)

    return {config.metrics.path: Endpoint(frozenset({"GET", "HEAD"}), local_metrics)}


def _direct_loopback(request: web.Request) -> bool:
    """A caller on this machine, not relayed by a proxy on it (which would add X-Forwarded-For or Forwarded)."""
    if "X-Forwarded-For" in request.headers or "Forwarded" in request.headers:
        return False
    return is_loopback(request.remote)


class Gateway:
    """The process-wide parts (store, upstream pool, metrics) and the runtime currently in force."""

    def __init__(
        self,
        runtime: Runtime,
        store: Store,
        upstream: Upstream,
        metrics: Metrics | None = None,
        lifecycle: Lifecycle | None = None,
        admissions: AdmissionCache | None = None,
        tracer: Tracer | None = None,
    ) -> None:
        self.runtime = runtime
        self.store = store
        self.upstream = upstream
        self.metrics = metrics if metrics is not None else Metrics()
        self.lifecycle = lifecycle if lifecycle is not None else Lifecycle()
        self.admissions = admissions  # admitted callers per (credential, route), for proxy and decision mode
        self.tracer = tracer  # tracing.enabled: the process's spans (read at start)
        self.swap(runtime)

    def swap(self, runtime: Runtime) -> None:
        """Put a new runtime in force; requests already running keep the one they started with."""
        self.runtime = runtime
        if self.admissions is not None:
            self.admissions.clear()  # its entries name routes of the old configuration
        self.lifecycle.store_required = runtime.config.store.failure_mode == "fail_closed"


GATEWAY = web.AppKey("gateway", Gateway)
RUNTIME = web.RequestKey("runtime", Runtime)  # dispatch: the snapshot a request runs on, for its answer's headers too

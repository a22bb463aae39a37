"""The Django recipe of docs/recipes.md: request.user is the gateway's user."""
import jwt
from django.conf import settings
from django.contrib.auth.middleware import RemoteUserMiddleware
from django.http import JsonResponse
from gateway_identity import verify_identity  # the snippet of docs/upstreams.md


class GatewayRemoteUserMiddleware(RemoteUserMiddleware):
    """Believes X-User-Id, which the gateway injects (route `headers: {X-User-Id: sub}`) and strips from clients.

    Safe only when nothing but the gateway can reach this service."""

    header = "HTTP_X_USER_ID"
    force_logout_if_no_header = True  # no header (a public route): anonymous, even with an old session cookie


class GatewayIdentityMiddleware(RemoteUserMiddleware):
    """Believes only a valid X-Gateway-Identity (route `identity_jwt: {}`): 401 for a forged, expired or
    foreign-audience token, anonymous without one."""

    header = "HTTP_X_GATEWAY_IDENTITY"
    force_logout_if_no_header = True
    async_capable = False  # verify_identity may block (a JWKS fetch): under ASGI Django runs this in a thread

    def __call__(self, request):
        token = request.META.get(self.header)
        if token is not None:
            try:
                claims = verify_identity(token, settings.GATEWAY_JWKS_URL, settings.GATEWAY_ISSUER, settings.GATEWAY_AUDIENCE)
            except jwt.PyJWTError as exc:
                return JsonResponse({"detail": f"invalid gateway identity: {exc}"}, status=401)
            request.META[self.header] = claims["sub"]  # RemoteUserMiddleware now reads the verified subject
            request.gateway_claims = claims
        return super().__call__(request)

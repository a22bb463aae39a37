"""The Django REST framework recipe of docs/recipes.md: authentication classes instead of the middleware
(DRF's SessionAuthentication would demand a CSRF token on every POST from the gateway's bearer clients)."""
import jwt
from django.conf import settings
from django.contrib.auth import authenticate
from gateway_identity import verify_identity  # the snippet of docs/upstreams.md
from rest_framework.authentication import BaseAuthentication, RemoteUserAuthentication
from rest_framework.exceptions import AuthenticationFailed


class GatewayRemoteUserAuthentication(RemoteUserAuthentication):
    """request.user from X-User-Id (needs RemoteUserBackend). Only where nothing but the gateway reaches the app."""

    header = "HTTP_X_USER_ID"


class GatewayIdentityAuthentication(BaseAuthentication):
    """request.user from a valid X-Gateway-Identity, request.auth its claims; a bad token is a 401."""

    def authenticate(self, request):
        token = request.META.get("HTTP_X_GATEWAY_IDENTITY")
        if not token:
            return None
        try:
            claims = verify_identity(token, settings.GATEWAY_JWKS_URL, settings.GATEWAY_ISSUER, settings.GATEWAY_AUDIENCE)
        except jwt.PyJWTError as exc:
            raise AuthenticationFailed(f"invalid gateway identity: {exc}") from None
        user = authenticate(request._request, remote_user=claims["sub"])  # RemoteUserBackend: found or created
        if user is None:
            raise AuthenticationFailed("inactive or unknown user")
        return user, claims

    def authenticate_header(self, request):
        return 'Bearer realm="gateway"'  # so an anonymous call is a 401, not a 403

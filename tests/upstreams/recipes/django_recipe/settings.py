"""A minimal Django project behind the gateway (docs/recipes.md#django), run by tests/ops/test_recipes.py.

GATEWAY_MODE=header: request.user comes from X-User-Id (GatewayRemoteUserMiddleware);
GATEWAY_MODE=signed: from the verified X-Gateway-Identity (GatewayIdentityMiddleware);
GATEWAY_MODE=drf-header / drf-signed: Django REST framework views, authenticated by the DRF classes
GatewayRemoteUserAuthentication / GatewayIdentityAuthentication instead of a middleware.
"""
import os

SECRET_KEY = "recipe-tests-only"
DEBUG = False
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "django_recipe.urls"
MODE = os.environ.get("GATEWAY_MODE", "header")
INSTALLED_APPS = ["django.contrib.auth", "django.contrib.contenttypes", "django.contrib.sessions", "rest_framework"]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": os.environ.get("RECIPE_DB", "recipe.sqlite3")}}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True

# The recipe: the gateway's user is request.user.
GATEWAY_JWKS_URL = os.environ.get("GATEWAY_JWKS_URL", "")  # e.g. http://gateway.internal/.well-known/jwks.json
GATEWAY_ISSUER = os.environ.get("GATEWAY_ISSUER", "")  # the gateway's tokens.issuer
GATEWAY_AUDIENCE = os.environ.get("GATEWAY_AUDIENCE", "")  # the route's identity_jwt.audience
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]
if MODE == "header":
    MIDDLEWARE.append("django_recipe.middleware.GatewayRemoteUserMiddleware")  # after AuthenticationMiddleware
elif MODE == "signed":
    MIDDLEWARE.append("django_recipe.middleware.GatewayIdentityMiddleware")
AUTHENTICATION_BACKENDS = ["django.contrib.auth.backends.RemoteUserBackend"]  # create_unknown_user = True
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [{
        "drf-header": "django_recipe.drf.GatewayRemoteUserAuthentication",
        "drf-signed": "django_recipe.drf.GatewayIdentityAuthentication",
    }.get(MODE, "rest_framework.authentication.SessionAuthentication")],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}

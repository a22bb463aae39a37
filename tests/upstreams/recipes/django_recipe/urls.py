from django.conf import settings
from django.http import JsonResponse
from django.urls import re_path
from rest_framework.response import Response
from rest_framework.views import APIView


def whoami(request):
    """The view decides, as with @login_required: anonymous (no or no valid gateway identity) is a 401."""
    if not request.user.is_authenticated:
        return JsonResponse({"upstream": "django", "detail": "not authenticated", "user": None}, status=401)
    claims = getattr(request, "gateway_claims", None)
    return JsonResponse({"upstream": "django", "user": request.user.get_username(),
                         "roles": claims.get("roles") if claims else None})


class WhoAmI(APIView):  # DEFAULT_AUTHENTICATION_CLASSES and IsAuthenticated from settings.REST_FRAMEWORK
    def get(self, request):
        claims = request.auth if isinstance(request.auth, dict) else None
        return Response({"upstream": "drf", "user": request.user.get_username(),
                         "roles": claims.get("roles") if claims else None})


urlpatterns = [re_path(r"^.*$", WhoAmI.as_view() if settings.MODE.startswith("drf") else whoami)]

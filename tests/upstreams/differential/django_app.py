"""A one-file Django app on gunicorn (gthread, keep-alive) for the upstream client's differential test.

Run as ``gunicorn django_app:application``; every view answers what the
client's request looked like or a response shape the test needs.
"""
from __future__ import annotations

import json

from django.conf import settings

settings.configure(
    DEBUG=False, SECRET_KEY="differential-test-only", ROOT_URLCONF=__name__, ALLOWED_HOSTS=["*"],
    MIDDLEWARE=[], INSTALLED_APPS=[], USE_TZ=True,
)

from django.core.wsgi import get_wsgi_application  # noqa: E402
from django.http import HttpResponse, StreamingHttpResponse  # noqa: E402
from django.urls import path  # noqa: E402


def _connection(request):  # the gateway side's port: one per upstream connection
    sock = request.META.get("gunicorn.socket")
    return sock.getpeername()[1] if sock is not None else 0


def echo(request):
    body = request.body
    headers = {k: v for k, v in request.META.items() if k.startswith("HTTP_") or k in ("CONTENT_LENGTH", "CONTENT_TYPE")}
    response = HttpResponse(json.dumps({"method": request.method, "path": request.get_full_path(), "headers": headers,
                                        "body_bytes": len(body), "body_start": body[:32].decode("latin-1")}),
                            content_type="application/json")
    response["X-Conn"] = str(_connection(request))
    return response


def stream(request):
    parts = (b"part-%d;" % i * 500 for i in range(40))
    return StreamingHttpResponse(parts, content_type="text/plain")


def status(request, code):
    return HttpResponse(status=code)


def cookies(request):
    response = HttpResponse(b"cookies", content_type="text/plain")
    response.set_cookie("a", "1")
    response.set_cookie("b", "2", httponly=True)
    response.set_cookie("c", "3", samesite="Lax")
    return response


def big(request):
    return HttpResponse(bytes(range(256)) * 8192, content_type="application/octet-stream")  # 2 MiB


urlpatterns = [
    path("echo", echo), path("stream", stream), path("status/<int:code>", status), path("cookies", cookies), path("big", big),
]

application = get_wsgi_application()

"""A one-file Django project served through Django's ASGI handler (no lifespan support)."""

from __future__ import annotations

import os

from django.conf import settings

settings.configure(
    DEBUG=False,
    SECRET_KEY="tests-only-not-secret",
    ALLOWED_HOSTS=["127.0.0.1", "localhost"],
    ROOT_URLCONF=__name__,
    MIDDLEWARE=[],
    INSTALLED_APPS=[],
    DATA_UPLOAD_MAX_MEMORY_SIZE=10 * 1024 * 1024,
)

from django.core.asgi import get_asgi_application  # noqa: E402
from django.http import HttpRequest, JsonResponse, StreamingHttpResponse  # noqa: E402
from django.urls import path  # noqa: E402
from django.views.decorators.csrf import csrf_exempt  # noqa: E402


def home(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"framework": "django", "pid": os.getpid()})


def stream(request: HttpRequest) -> StreamingHttpResponse:
    return StreamingHttpResponse(f"chunk {i}\n".encode() for i in range(5))


@csrf_exempt
def upload(request: HttpRequest) -> JsonResponse:
    sent = request.FILES["file"]
    return JsonResponse({"name": sent.name, "size": len(sent.read())})


urlpatterns = [path("", home), path("stream", stream), path("upload", upload)]

app = get_asgi_application()

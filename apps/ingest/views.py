from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from apps.ingest.services import WebhookRequest, webhook_receive


@csrf_exempt
@require_POST
def webhook(request: HttpRequest, partner: str, channel: str) -> JsonResponse:
    """Store a signed webhook from a partner's channel; 202 means stored, parsing comes later.

    Served so through the test client and WSGI; the ASGI server answers ``/hooks/`` itself, without
    the middleware pages need (``apps.ingest.asgi``).
    """
    size = int(request.META.get("CONTENT_LENGTH") or 0)
    hook = WebhookRequest(
        partner=partner,
        channel=channel,
        body=request.body if size <= settings.INGEST_MAX_MESSAGE_BYTES else b"",  # too large: 413, unread
        declared_size=size,
        timestamp=request.headers.get("X-Timestamp", ""),
        signature=request.headers.get("X-Signature", ""),
        idempotency_key=request.headers.get("Idempotency-Key"),
        content_type=request.content_type or "",
        headers={name.lower(): value for name, value in request.headers.items()},
    )
    status, answer = webhook_receive(hook, lambda pk: request.build_absolute_uri(reverse("api-message", args=[pk])))
    return JsonResponse(answer, status=status)

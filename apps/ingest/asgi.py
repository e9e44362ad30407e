"""Signed webhooks answered by the ASGI server itself: read, verify, store, queue, answer.

A webhook needs none of what a page needs (session, CSRF, messages, time zone, lockouts, a thread
of its own per request): at a thousand a second that machinery would cost more than the work.
The answer is the same as the Django view's (``apps.ingest.views.webhook``, which WSGI and the
test client use): both call ``webhook_receive``. Host, scheme and HTTPS redirect are checked as
Django's own middleware would.
"""

import json
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import close_old_connections
from django.http.request import split_domain_port, validate_host
from django.urls import reverse

from apps.ingest.services import WebhookRequest, webhook_receive

logger = logging.getLogger(__name__)

HOOK_PATH = re.compile(r"^/hooks/(?P<partner>[^/]{1,100})/(?P<channel>[^/]{1,100})/$")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


def is_webhook(scope: Scope) -> bool:
    return scope["method"] == "POST" and HOOK_PATH.match(scope["path"]) is not None


async def webhook_endpoint(scope: Scope, receive: Receive, send: Send) -> None:
    headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in scope.get("headers", ())}
    host = _allowed_host(headers)
    if host is None:
        await _answer(send, 400, {"detail": "This host is not served here."})
        return
    scheme = _scheme(scope, headers)
    if settings.SECURE_SSL_REDIRECT and scheme != "https":
        await _answer(send, 301, {"detail": "Use HTTPS."}, location=f"https://{host}{scope['path']}")
        return
    body = await _body(receive)
    if body is None:
        return  # the client went away (or the front door cut an endless body off)
    match = HOOK_PATH.match(scope["path"])
    hook = WebhookRequest(
        partner=match["partner"],
        channel=match["channel"],
        body=body,
        declared_size=int(headers.get("content-length") or len(body)),
        timestamp=headers.get("x-timestamp", ""),
        signature=headers.get("x-signature", ""),
        idempotency_key=headers.get("idempotency-key"),
        content_type=headers.get("content-type", "").split(";")[0].strip(),
        headers=headers,
    )
    try:
        status, answer = await sync_to_async(_receive, thread_sensitive=False)(hook, f"{scheme}://{host}")
    except Exception:
        logger.exception("webhook %s/%s could not be received", hook.partner, hook.channel)
        status, answer = 500, {"detail": "The webhook could not be stored; send it again later."}
    await _answer(send, status, answer)


def _receive(hook: WebhookRequest, origin: str) -> tuple[int, dict]:
    """In a worker thread, as a request's view would run: its database connection is handed back
    (to the pool) when done."""
    close_old_connections()
    try:
        return webhook_receive(hook, lambda pk: origin + reverse("api-message", args=[pk]))
    finally:
        close_old_connections()


def _allowed_host(headers: dict[str, str]) -> str | None:
    host = headers.get("host", "")
    domain, _ = split_domain_port(host)
    allowed = settings.ALLOWED_HOSTS
    if settings.DEBUG and not allowed:
        allowed = [".localhost", "127.0.0.1", "[::1]"]
    return host if domain and validate_host(domain, allowed) else None


def _scheme(scope: Scope, headers: dict[str, str]) -> str:
    if settings.SECURE_PROXY_SSL_HEADER and headers.get("x-forwarded-proto", "").split(",")[0].strip() == "https":
        return "https"
    return scope.get("scheme", "http")


async def _body(receive: Receive) -> bytes | None:
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def _answer(send: Send, status: int, answer: dict, *, location: str | None = None) -> None:
    headers = [(b"content-type", b"application/json"), (b"x-content-type-options", b"nosniff")]
    if location:
        headers.append((b"location", location.encode("latin-1")))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": json.dumps(answer).encode()})

"""What a web process does before Django sees a request: refuse, at once, what it cannot take.

- A body larger than ``DATA_UPLOAD_MAX_MEMORY_SIZE`` is refused with ``413`` before a byte of it is
  read when its length is declared; a body sent in chunks is cut off when it passes the limit
  (Django's ASGI handler would otherwise spool the whole of it to disk first).
- At most ``WEB_MAX_IN_FLIGHT`` requests are handled at once per process; the next ones get
  ``503`` with ``Retry-After`` instead of waiting in a queue that only grows: partners retry, and
  a fast "later" keeps a burst from turning into a storm of timeouts. The health check is always
  answered, so a busy process is not taken for a dead one.
"""

import json
from collections.abc import Awaitable, Callable
from typing import Any

from django.conf import settings

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

ALWAYS_ANSWERED = frozenset({"/healthz"})
RETRY_AFTER_SECONDS = 1


Route = tuple[Callable[[Scope], bool], ASGIApp]


class FrontDoor:
    """Guards ``app``; ``routes`` answer some requests (a predicate on the scope) without it."""

    def __init__(self, app: ASGIApp, routes: list[Route] | None = None) -> None:
        self.app = app
        self.routes = routes or []
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        declared = _declared_length(scope)
        if declared is not None and declared > limit:
            await _answer(send, 413, f"The body is {declared:,} bytes; the limit is {limit:,} bytes.")
            return
        if self.in_flight >= settings.WEB_MAX_IN_FLIGHT and scope["path"] not in ALWAYS_ANSWERED:
            await _answer(send, 503, "Too many requests in progress; retry shortly.", retry_after=RETRY_AFTER_SECONDS)
            return
        app = next((route for wanted, route in self.routes if wanted(scope)), self.app)
        self.in_flight += 1
        try:
            await app(scope, _capped(receive, limit), send)
        finally:
            self.in_flight -= 1


def _declared_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _capped(receive: Receive, limit: int) -> Receive:
    """``receive`` that reports the client gone once the body passes ``limit``: the request is
    dropped unanswered rather than read to the end."""
    received = 0

    async def capped() -> Message:
        nonlocal received
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit:
                return {"type": "http.disconnect"}
        return message

    return capped


async def _answer(send: Send, status: int, detail: str, *, retry_after: int | None = None) -> None:
    headers = [(b"content-type", b"application/json"), (b"connection", b"close")]
    if retry_after is not None:
        headers.append((b"retry-after", str(retry_after).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": json.dumps({"detail": detail}).encode()})

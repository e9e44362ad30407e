"""Webhooks through the ASGI server's own path (``apps.ingest.asgi``) answer as the Django view
does, and check host, scheme and HTTPS as Django's middleware would."""

import asyncio
import json
import time

import pytest

from apps.ingest.models import InboundMessage
from apps.ingest.webhooks import signature_for
from controltower.asgi import application
from tests.support import http_scope

from .conftest import WEBHOOK_SECRET, as_body, order_created

pytestmark = pytest.mark.django_db(transaction=True)
PATH = "/hooks/UPSN/hook/"


def signed(body: bytes, *, secret: str = WEBHOOK_SECRET, stamp: str | None = None) -> dict[str, str]:
    stamp = stamp or str(int(time.time()))
    return {"X-Timestamp": stamp, "X-Signature": signature_for(secret, stamp, body)}


def over_asgi(body: bytes, headers: dict[str, str], path: str = PATH, *, host: str = "testserver") -> tuple[int, dict]:
    scope = http_scope(
        path, {"Host": host, "Content-Type": "application/json", "Content-Length": str(len(body)), **headers}
    )
    sent: list[dict] = []
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict:
        return pending.pop(0) if pending else {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    asyncio.run(application(scope, receive, send))
    start, content = sent
    result = json.loads(content["body"]) if content["body"] else {}
    return start["status"], {"_headers": dict(start["headers"]), **result}


def over_django(client, body: bytes, headers: dict[str, str], path: str = PATH) -> tuple[int, dict]:
    extra = {f"HTTP_{name.upper().replace('-', '_')}": value for name, value in headers.items()}
    response = client.post(path, body, content_type="application/json", **extra)
    return response.status_code, response.json()


def test_a_signed_webhook_is_stored_and_answered_as_the_view_answers(client, carrier):
    first, second = as_body(order_created("SO-1")), as_body(order_created("SO-2"))

    status, answer = over_asgi(first, signed(first))
    view_status, view_answer = over_django(client, second, signed(second))

    assert (status, view_status) == (202, 202)
    message = InboundMessage.objects.get(pk=answer["id"])
    assert (message.partner, message.source, message.body) == (carrier, "webhook", first)
    assert answer["status_url"] == f"http://testserver/api/v1/messages/{message.pk}/"
    assert set(answer) - {"_headers"} == set(view_answer)
    assert answer["_headers"][b"x-content-type-options"] == b"nosniff"


@pytest.mark.parametrize(
    ("case", "expected"),
    [("wrong secret", 401), ("unknown channel", 404), ("resent", 200), ("stale", 401), ("no headers", 401)],
)
def test_refusals_and_resends_match_the_view(client, carrier, case, expected):
    path = "/hooks/UPSN/nope/" if case == "unknown channel" else PATH

    def headers_for(body: bytes) -> dict[str, str]:
        if case == "wrong secret":
            return signed(body, secret="not-it")
        if case == "stale":
            return signed(body, stamp=str(int(time.time()) - 3600))
        return {} if case == "no headers" else signed(body)

    answers = []
    for number, send in enumerate((over_asgi, lambda body, headers, path: over_django(client, body, headers, path))):
        body = as_body(order_created(f"SO-{number}"))
        if case == "resent":
            send(body, signed(body, stamp=str(int(time.time()) - 2)), path)
        answers.append(send(body, headers_for(body), path))

    assert [status for status, _ in answers] == [expected, expected]
    assert answers[0][1].get("detail") == answers[1][1].get("detail")
    assert InboundMessage.objects.count() == (2 if case == "resent" else 0)


def test_a_host_not_served_here_is_refused_before_anything_is_read(carrier, settings):
    settings.ALLOWED_HOSTS = ["tower.example"]
    body = as_body(order_created())

    status, answer = over_asgi(body, signed(body), host="evil.example")

    assert status == 400
    assert not InboundMessage.objects.exists()


def test_plain_http_is_sent_to_https_when_the_site_requires_it(carrier, settings):
    settings.SECURE_SSL_REDIRECT = True
    body = as_body(order_created())

    status, answer = over_asgi(body, signed(body))

    assert status == 301
    assert answer["_headers"][b"location"] == b"https://testserver/hooks/UPSN/hook/"
    assert not InboundMessage.objects.exists()


def test_https_behind_a_trusted_proxy_is_seen_as_https(carrier, settings):
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    body = as_body(order_created())

    status, answer = over_asgi(body, {**signed(body), "X-Forwarded-Proto": "https"})

    assert status == 202
    assert answer["status_url"].startswith("https://testserver/")


def test_a_failure_while_storing_is_a_plain_500_that_reveals_nothing(carrier, monkeypatch):
    from apps.ingest import services

    def broken(**kwargs):
        raise RuntimeError("connection to 10.0.0.5 refused")

    monkeypatch.setattr(services, "message_receive", broken)
    body = as_body(order_created())

    status, answer = over_asgi(body, signed(body))

    assert status == 500
    assert "10.0.0.5" not in answer["detail"]
    assert answer["detail"] == "The webhook could not be stored; send it again later."

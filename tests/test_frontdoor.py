"""The web process refuses what it cannot take before Django reads it: oversized bodies (413, or
cut off when sent in chunks) and requests beyond what it handles at once (503 with Retry-After)."""

import asyncio
import json

import pytest

from controltower.asgi import application
from controltower.frontdoor import FrontDoor
from tests.support import http_scope


def scope(path: str = "/hooks/UPSN/hook/", length: int | None = None) -> dict:
    headers = {"Host": "127.0.0.1", "Content-Type": "application/json"}
    return http_scope(path, headers if length is None else {**headers, "Content-Length": str(length)})


def call(app, request_scope: dict, chunks: list[bytes]) -> list[dict]:
    """Run one request through ``app``; the messages it sent back."""
    sent: list[dict] = []
    pending = [
        {"type": "http.request", "body": chunk, "more_body": i < len(chunks) - 1} for i, chunk in enumerate(chunks)
    ]

    async def receive() -> dict:
        return pending.pop(0) if pending else {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    asyncio.run(app(request_scope, receive, send))
    return sent


class Reader:
    """An app that reads the whole body, as Django's handler does, then answers 202."""

    def __init__(self) -> None:
        self.read = 0
        self.called = False

    async def __call__(self, request_scope, receive, send) -> None:
        self.called = True
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            self.read += len(message.get("body", b""))
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 202, "headers": []})
        await send({"type": "http.response.body", "body": b""})


def test_a_declared_oversized_body_is_refused_before_it_is_read(settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    inner = Reader()

    sent = call(FrontDoor(inner), scope(length=1001), [b"x" * 1001])

    assert sent[0]["status"] == 413
    assert "limit is 1,000 bytes" in json.loads(sent[1]["body"])["detail"]
    assert not inner.called


def test_a_chunked_body_is_cut_off_when_it_passes_the_limit(settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    inner = Reader()

    sent = call(FrontDoor(inner), scope(), [b"x" * 600, b"x" * 600, b"x" * 600])

    assert sent == [], "the request is dropped unanswered"
    assert inner.read == 600


def test_a_body_within_the_limit_reaches_the_application(settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    inner = Reader()

    sent = call(FrontDoor(inner), scope(length=1000), [b"x" * 500, b"x" * 500])

    assert sent[0]["status"] == 202
    assert inner.read == 1000


def test_beyond_the_requests_in_flight_the_answer_is_503_with_retry_after(settings):
    settings.WEB_MAX_IN_FLIGHT = 2

    async def scenario() -> list[int]:
        release = asyncio.Event()

        async def slow(request_scope, receive, send) -> None:
            await release.wait()
            await send({"type": "http.response.start", "status": 202, "headers": []})
            await send({"type": "http.response.body", "body": b""})

        door = FrontDoor(slow)
        statuses: list[int] = []
        headers: list[dict] = []

        async def request(path: str = "/hooks/UPSN/hook/") -> None:
            async def receive() -> dict:
                return {"type": "http.request", "body": b"", "more_body": False}

            async def send(message: dict) -> None:
                if message["type"] == "http.response.start":
                    statuses.append(message["status"])
                    headers.append(dict(message["headers"]))

            await door(scope(path), receive, send)

        held = [asyncio.create_task(request()) for _ in range(2)]
        await asyncio.sleep(0)
        await request()  # a third while two are in progress
        held.append(asyncio.create_task(request("/healthz")))  # always let in (it waits like the others here)
        await asyncio.sleep(0)
        assert statuses == [503]
        assert headers[0][b"retry-after"] == b"1"
        release.set()
        await asyncio.gather(*held)
        await request()  # room again
        return statuses

    assert asyncio.run(scenario()) == [503, 202, 202, 202, 202]


@pytest.mark.django_db
def test_the_served_application_has_the_front_door(settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000

    sent = call(application, scope(length=5000), [b"x" * 5000])

    assert sent[0]["status"] == 413

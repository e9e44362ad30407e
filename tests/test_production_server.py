"""The production server as deployed (gunicorn with uvicorn worker processes, ``gunicorn.conf.py``)
answers the health check, stores signed webhooks, refuses oversized bodies unread and carries the
live pages' websockets."""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from django.test import Client
from websockets.sync.client import connect

from apps.exceptions.roles import roles_ensure
from apps.ingest.models import InboundMessage
from apps.ingest.webhooks import signature_for
from apps.partners.models import Channel, Partner
from apps.timeline.realtime import broadcast_orders_changed
from tests.factories import UserFactory
from tests.support import ROOT, database_url, needs_services

pytestmark = [pytest.mark.serial, needs_services, pytest.mark.django_db(transaction=True)]
SECRET = "whsec-production-server-test-secret"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def server(settings) -> Iterator[str]:
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "SECRET_KEY": settings.SECRET_KEY,  # a session signed in here is valid there
        "ALLOWED_HOSTS": "127.0.0.1",
        "SECURE_SSL_REDIRECT": "false",
        "CELERY_TASK_ALWAYS_EAGER": "true",
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "WEB_CONCURRENCY": "2",
    }
    command = [sys.executable, "-m", "gunicorn", "--config", str(ROOT / "gunicorn.conf.py")]
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"{base}/healthz", timeout=2)  # noqa: S310 (our own loopback server)
            break
        except OSError:
            assert process.poll() is None, "the server exited"
            assert time.monotonic() < deadline, "the server did not answer within 60 s"
            time.sleep(0.2)
    yield base
    process.terminate()
    process.wait(timeout=30)


def post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310 (loopback)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def test_signed_webhooks_are_stored_and_oversized_bodies_refused_unread(server, settings):
    partner = Partner.objects.create(code="UPSN", name="UPS", kind=Partner.Kind.CARRIER)
    Channel.objects.create(partner=partner, code="hook", format=Channel.Format.WEBHOOK, webhook_secret=SECRET)
    body = json.dumps({"event_id": "e1", "kind": "order.created", "occurred_at": "2026-12-01T10:00:00Z"}).encode()
    stamp = str(int(time.time()))
    signed = {
        "Content-Type": "application/json",
        "X-Timestamp": stamp,
        "X-Signature": signature_for(SECRET, stamp, body),
    }

    status, answer = post(f"{server}/hooks/UPSN/hook/", body, signed)

    assert status == 202
    assert InboundMessage.objects.filter(pk=answer["id"], partner=partner).exists()
    too_big = settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1
    with socket.create_connection(("127.0.0.1", int(server.rsplit(":", 1)[1])), timeout=10) as raw:
        raw.sendall(f"POST /hooks/UPSN/hook/ HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {too_big}\r\n\r\n".encode())
        assert raw.recv(200).startswith(b"HTTP/1.1 413")


def test_an_open_order_page_hears_of_changes_over_its_websocket(server):
    person = UserFactory()
    person.groups.add(roles_ensure()["Customer Service"])
    browser = Client()
    browser.force_login(person)
    cookie = f"sessionid={browser.cookies['sessionid'].value}"

    with connect(f"ws{server[4:]}/ws/orders/42/", origin=server, additional_headers={"Cookie": cookie}) as socket_:
        time.sleep(0.3)  # joined its group
        broadcast_orders_changed([42])
        pushed = socket_.recv(timeout=10)

    assert "/orders/42/" in pushed

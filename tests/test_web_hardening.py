"""Web hardening: sign-in throttling, the Content-Security-Policy, /metrics, /healthz, the proxy
headers and the API schema, each tried the way an outsider would."""

import ipaddress
import json
import re
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
import time_machine
from django.contrib import admin
from django.db import OperationalError
from django.test import RequestFactory
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.utils import timezone

from apps.exceptions.models import Queue
from apps.partners.models import Partner
from apps.partners.services import api_token_create
from controltower.auth import client_ip
from tests.factories import (
    PASSWORD,
    DeliveryFactory,
    ExceptionCaseFactory,
    InboundMessageFactory,
    InventoryPositionFactory,
    OrderFactory,
    PartnerFactory,
    TrackingLinkFactory,
    UserFactory,
)

ROOT = Path(__file__).resolve().parent.parent
ATTACKER = "203.0.113.66"
OFFICE = "198.51.100.7"
WRONG = "not-the-password"
SIGN_IN_PAGES = ["/login/", "/admin/login/"]

pytestmark = pytest.mark.django_db


def sign_in(client, path: str, username: str, password: str, address: str, **headers: str):
    return client.post(path, {"username": username, "password": password}, REMOTE_ADDR=address, headers=headers)


def signed_in(client) -> bool:
    return "_auth_user_id" in client.session


def partner_bearer() -> str:
    _, raw = api_token_create(partner=PartnerFactory(kind=Partner.Kind.ERP), name="ERP")
    return f"Bearer {raw}"


@pytest.fixture
def finance():
    return UserFactory(username="finance", is_staff=True)


# --- Sign-in throttling --------------------------------------------------------------------------


@pytest.mark.parametrize("path", SIGN_IN_PAGES)
def test_the_sixth_attempt_from_one_address_is_refused_even_with_the_right_password(client, finance, path):
    failures = [sign_in(client, path, "finance", WRONG, ATTACKER).status_code for _ in range(5)]
    assert failures == [200, 200, 200, 200, 429]  # the fifth failure locks the pair

    response = sign_in(client, path, "finance", PASSWORD, ATTACKER)

    assert response.status_code == 429
    assert "Too many failed sign-ins" in response.content.decode()
    assert not signed_in(client)


@pytest.mark.parametrize("path", SIGN_IN_PAGES)
def test_the_same_username_from_another_address_still_signs_in(client, finance, path):
    for _ in range(6):
        sign_in(client, path, "finance", WRONG, ATTACKER)

    response = sign_in(client, path, "finance", PASSWORD, OFFICE)

    assert response.status_code == 302
    assert signed_in(client)


def test_failures_on_one_sign_in_page_lock_the_other(client, finance):
    for _ in range(5):
        sign_in(client, "/login/", "finance", WRONG, ATTACKER)

    assert sign_in(client, "/admin/login/", "finance", PASSWORD, ATTACKER).status_code == 429


def test_after_the_cool_off_the_pair_signs_in_again(client, finance):
    for _ in range(5):
        sign_in(client, "/login/", "finance", WRONG, ATTACKER)
    assert sign_in(client, "/login/", "finance", PASSWORD, ATTACKER).status_code == 429

    with time_machine.travel(timezone.now() + timedelta(minutes=16)):
        response = sign_in(client, "/login/", "finance", PASSWORD, ATTACKER)

    assert response.status_code == 302
    assert signed_in(client)


def test_the_limit_and_cool_off_come_from_settings(client, finance, settings):
    settings.AXES_FAILURE_LIMIT = 2
    settings.AXES_COOLOFF_TIME = timedelta(minutes=1)
    for _ in range(2):
        sign_in(client, "/login/", "finance", WRONG, ATTACKER)
    assert sign_in(client, "/login/", "finance", PASSWORD, ATTACKER).status_code == 429

    with time_machine.travel(timezone.now() + timedelta(minutes=2)):
        assert sign_in(client, "/login/", "finance", PASSWORD, ATTACKER).status_code == 302


def test_a_forged_forwarded_for_header_does_not_dodge_the_lock_by_default(client, finance):
    for n in range(5):
        sign_in(client, "/login/", "finance", WRONG, ATTACKER, X_Forwarded_For=f"192.0.2.{n}")

    response = sign_in(client, "/login/", "finance", PASSWORD, ATTACKER, X_Forwarded_For="192.0.2.99")

    assert response.status_code == 429


def test_behind_a_trusted_proxy_each_client_address_is_its_own_pair(client, finance, settings):
    settings.TRUSTED_PROXY_COUNT = 1
    proxy = "10.0.0.2"
    for _ in range(6):
        sign_in(client, "/login/", "finance", WRONG, proxy, X_Forwarded_For=f"{OFFICE}, {ATTACKER}")

    assert sign_in(client, "/login/", "finance", PASSWORD, proxy, X_Forwarded_For=ATTACKER).status_code == 429
    assert sign_in(client, "/login/", "finance", PASSWORD, proxy, X_Forwarded_For=OFFICE).status_code == 302


@pytest.mark.parametrize(
    ("proxies", "forwarded_for", "expected"),
    [
        (0, "192.0.2.1", "10.0.0.2"),
        (1, "192.0.2.1, 198.51.100.7", "198.51.100.7"),
        (2, "192.0.2.1, 198.51.100.7, 10.0.0.9", "198.51.100.7"),
        (2, "198.51.100.7", "10.0.0.2"),
        (1, "", "10.0.0.2"),
    ],
)
def test_the_client_address_is_read_only_from_our_own_proxies(settings, proxies, forwarded_for, expected):
    settings.TRUSTED_PROXY_COUNT = proxies
    request = RequestFactory().get("/", REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR=forwarded_for)

    assert client_ip(request) == expected


def test_a_successful_sign_in_clears_earlier_failures(client, finance):
    for _ in range(4):
        sign_in(client, "/login/", "finance", WRONG, ATTACKER)
    assert sign_in(client, "/login/", "finance", PASSWORD, ATTACKER).status_code == 302
    client.logout()

    for _ in range(4):
        sign_in(client, "/login/", "finance", WRONG, ATTACKER)

    assert sign_in(client, "/login/", "finance", PASSWORD, ATTACKER).status_code == 302


def test_the_test_client_and_api_tokens_are_not_throttled(client, finance):
    for _ in range(6):
        sign_in(client, "/login/", "finance", WRONG, "127.0.0.1")

    assert client.login(username="finance", password=PASSWORD)
    client.logout()
    response = client.get("/api/v1/messages/999999/", headers={"Authorization": partner_bearer()})
    assert response.status_code == 404


# --- Content-Security-Policy ---------------------------------------------------------------------

TEMPLATE_DIRS = [ROOT / "templates", *sorted(ROOT.glob("apps/*/templates"))]
INLINE = {
    "an inline <script>": re.compile(r"<script\b(?![^>]*\bsrc=)[^>]*>", re.IGNORECASE),
    "an on* event handler": re.compile(r"\son[a-z]+\s*=", re.IGNORECASE),
    "an hx-on handler": re.compile(r"\shx-on[:-]", re.IGNORECASE),
    "an htmx filter (eval)": re.compile(r"hx-trigger=\"[^\"]*\["),
    "a javascript: URL": re.compile(r"javascript:", re.IGNORECASE),
    "an inline <style>": re.compile(r"<style\b", re.IGNORECASE),
    "a style attribute": re.compile(r"\sstyle\s*=", re.IGNORECASE),
}


def inline_code(html: str) -> list[str]:
    return [what for what, pattern in INLINE.items() if pattern.search(html)]


def policy(response) -> dict[str, list[str]]:
    header = response.headers["Content-Security-Policy"]
    directives = (part.split() for part in header.split(";") if part.strip())
    return {name: values for name, *values in directives}


def test_no_template_holds_inline_code():
    templates = [path for folder in TEMPLATE_DIRS for path in folder.rglob("*.html")]
    assert len(templates) > 30

    found = {str(path.relative_to(ROOT)): inline_code(path.read_text()) for path in templates}

    assert {path: what for path, what in found.items() if what} == {}


@pytest.mark.parametrize(
    "html",
    [
        "<script>alert(1)</script>",
        '<script type="module">x()</script>',
        '<button onclick="x()">',
        '<div hx-on:click="x()">',
        '<div hx-trigger="every 5s [ok()]">',
        '<a href="javascript:x()">',
        "<style>p{}</style>",
        '<p style="color: red">',
    ],
)
def test_the_scan_finds_each_kind_of_inline_code(html):
    assert inline_code(html)
    assert not inline_code('<script src="/static/js/app.js" defer></script><p class="x" data-on="y">')


@pytest.fixture
def everything():
    """One of each object a page is about, and a superuser who may read them all."""
    case = ExceptionCaseFactory()
    delivery = DeliveryFactory()
    return {
        "user": UserFactory(username="root", is_staff=True, is_superuser=True),
        "order": case.order,
        "case": case,
        "message": InboundMessageFactory(),
        "subscription": delivery.subscription,
        "delivery": delivery,
        "link": TrackingLinkFactory(order=OrderFactory()),
        "position": InventoryPositionFactory(),
    }


def sample_kwargs(name: str, objects: dict) -> dict:
    """Arguments for every route that takes some; a new route with arguments must be added here."""
    return {
        "api-order-detail": {"pk": objects["order"].pk},
        "order-detail": {"pk": objects["order"].pk},
        "api-message": {"pk": objects["message"].pk},
        "message-trace": {"pk": objects["message"].pk},
        "api-case-detail": {"pk": objects["case"].pk},
        "api-case-actions": {"pk": objects["case"].pk},
        "case-detail": {"pk": objects["case"].pk},
        "case-queue": {"queue": Queue.FINANCE},
        "case-queue-export": {"queue": Queue.FINANCE},
        "webhook": {"partner": "NOBODY", "channel": "none"},
        "track": {"token": objects["link"].token},
        "order-tracking-links": {"order_id": objects["order"].pk},
        "order-prediction": {"order_id": objects["order"].pk},
        "tracking-link-create": {"order_id": objects["order"].pk},
        "tracking-link-revoke": {"pk": objects["link"].pk},
        "api-subscription-detail": {"pk": objects["subscription"].pk},
        "api-subscription-deliveries": {"pk": objects["subscription"].pk},
        "api-subscription-rotate-secret": {"pk": objects["subscription"].pk},
        "subscription-detail": {"pk": objects["subscription"].pk},
        "deliveries-replay": {"pk": objects["subscription"].pk},
        "delivery-detail": {"pk": objects["delivery"].pk},
        "inventory-position": {"pk": objects["position"].pk},
    }.get(name, {})


def route_names(patterns) -> list[str]:
    names = []
    for pattern in patterns:
        if isinstance(pattern, URLResolver) and pattern.namespace != "admin":
            names += route_names(pattern.url_patterns)
        elif isinstance(pattern, URLPattern) and pattern.name:
            names.append(pattern.name)
    return names


def every_page(objects: dict) -> list[str]:
    """Every named route of ours, the admin's index and the change list of every registered model."""
    pages = [reverse(name, kwargs=sample_kwargs(name, objects)) for name in route_names(get_resolver().url_patterns)]
    pages.append(reverse("admin:index"))
    for model in admin.site._registry:
        prefix = f"admin:{model._meta.app_label}_{model._meta.model_name}"
        pages += [reverse(f"{prefix}_changelist"), reverse(f"{prefix}_add")]
    pages.append(reverse("admin:ingest_inboundmessage_change", args=[objects["message"].pk]))
    return pages


# The one style attribute still rendered: the channel form's monospace textarea (a widget attribute
# in apps/partners/admin.py). The policy refuses it, so the field only loses its font.
STYLE_ATTRIBUTE_LEFT = {"/admin/partners/channel/add/"}


def test_every_page_carries_the_policy_and_no_inline_code(client, everything):
    client.force_login(everything["user"])
    pages = every_page(everything)
    assert len(pages) > 90

    for page in pages:
        response = client.get(page)
        assert response.status_code < 500, page
        directives = policy(response)
        assert directives["script-src"] == ["'self'"], page
        assert directives["style-src"] == ["'self'"], page
        assert directives["object-src"] == ["'none'"], page
        assert directives["frame-ancestors"] == ["'none'"], page
        assert directives["base-uri"] == ["'self'"], page
        assert directives["connect-src"] == ["'self'"], page
        if response.get("Content-Type", "").startswith("text/html"):
            allowed = ["a style attribute"] if page in STYLE_ATTRIBUTE_LEFT else []
            assert inline_code(response.content.decode()) in ([], allowed), page


def test_the_sign_in_page_carries_the_policy(client):
    response = client.get("/login/")

    assert response.status_code == 200
    assert "'unsafe-inline'" not in response.headers["Content-Security-Policy"]
    assert "'unsafe-eval'" not in response.headers["Content-Security-Policy"]
    assert inline_code(response.content.decode()) == []


def test_htmx_is_configured_without_eval_or_injected_styles(client, everything):
    client.force_login(everything["user"])
    page = client.get(reverse("order-list")).content.decode()

    config = re.search(r"<meta name=\"htmx-config\" content='([^']*)'>", page)

    assert config is not None
    assert json.loads(config.group(1)) == {"includeIndicatorStyles": False, "allowEval": False}


# --- /metrics -------------------------------------------------------------------------------------


def test_metrics_are_not_served_when_nothing_is_configured(client, settings):
    settings.METRICS_TOKEN = ""
    settings.METRICS_ALLOWED_IPS = []

    assert client.get("/metrics").status_code == 404
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 404


def test_metrics_ask_for_the_configured_token(client, settings):
    settings.METRICS_TOKEN = "scrape-token"

    refused = client.get("/metrics", headers={"Authorization": "Bearer wrong"})
    allowed = client.get("/metrics", headers={"Authorization": "Bearer scrape-token"})

    assert refused.status_code == 401
    assert refused["WWW-Authenticate"] == "Bearer"
    assert allowed.status_code == 200
    assert b"controltower_inbound_messages" in allowed.content


def test_metrics_answer_an_allowed_peer_without_a_token(client, settings):
    settings.METRICS_TOKEN = ""
    settings.METRICS_ALLOWED_IPS = [ipaddress.ip_network("10.1.0.0/16")]

    assert client.get("/metrics", REMOTE_ADDR="10.1.2.3").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="10.2.0.1").status_code == 404
    forged = client.get("/metrics", REMOTE_ADDR=ATTACKER, headers={"X-Forwarded-For": "10.1.2.3"})
    assert forged.status_code == 404


# --- Proxy headers --------------------------------------------------------------------------------


def test_a_client_saying_https_is_not_believed_by_default(client, settings):
    settings.SECURE_SSL_REDIRECT = True

    response = client.get("/login/", headers={"X-Forwarded-Proto": "https"})

    assert settings.SECURE_PROXY_SSL_HEADER is None
    assert response.status_code == 301
    assert response["Location"].startswith("https://")
    assert not RequestFactory().get("/", HTTP_X_FORWARDED_PROTO="https").is_secure()


def _setting(name: str, **env: str) -> str:
    code = f"from django.conf import settings; print(repr(settings.{name}))"
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "SECRET_KEY": "x" * 50, "DATABASE_URL": "sqlite:///:memory:", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


def test_the_forwarded_proto_header_is_trusted_only_when_configured():
    assert _setting("SECURE_PROXY_SSL_HEADER") == "None"
    assert _setting("SECURE_PROXY_SSL_HEADER", TRUST_X_FORWARDED_PROTO="true") == "('HTTP_X_FORWARDED_PROTO', 'https')"


# --- /healthz -------------------------------------------------------------------------------------


def test_healthz_fails_with_a_generic_answer_and_logs_the_reason(client, monkeypatch, caplog):
    reason = 'connection to server at "db.internal.example" (10.9.8.7), port 5432 failed: password=hunter2'

    def broken_cursor(*args, **kwargs):
        raise OperationalError(reason)

    monkeypatch.setattr("controltower.views.connection.cursor", broken_cursor)

    response = client.get(reverse("healthz"))

    assert response.status_code == 503
    assert response.json() == {"status": "unavailable"}
    assert reason in caplog.text


# --- API schema and docs --------------------------------------------------------------------------


def test_the_api_schema_and_docs_are_for_signed_in_people(client):
    assert client.get(reverse("api-schema")).status_code in (401, 403)
    docs = client.get(reverse("api-docs"))
    assert docs.status_code == 302
    assert docs["Location"].startswith(reverse("login"))
    assert client.get(reverse("api-docs") + "?script=").status_code == 302


def test_a_partner_token_cannot_read_the_schema(client):
    response = client.get(reverse("api-schema"), headers={"Authorization": partner_bearer()})

    assert response.status_code == 403


def test_a_signed_in_person_reads_the_schema_and_docs_under_the_policy(client):
    client.force_login(UserFactory())

    schema = client.get(reverse("api-schema"), {"format": "json"})
    docs = client.get(reverse("api-docs"))
    script = client.get(reverse("api-docs"), {"script": ""})

    assert schema.status_code == 200
    assert "/api/v1/orders/" in schema.json()["paths"]
    assert docs.status_code == 200
    assert inline_code(docs.content.decode()) == []
    assert script.status_code == 200
    assert script["Content-Type"].startswith("application/javascript")
    assert "SwaggerUIBundle" in script.content.decode()

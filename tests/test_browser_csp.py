"""A real Chromium under the real Content-Security-Policy: every kind of page works and the browser
refuses nothing (no inline script, no eval, no injected style), the live pages' websockets included.

Runs a real Daphne server in its own process, so it needs PostgreSQL and Redis (set by .ci/run).
"""

import os

import pytest
from channels.testing import ChannelsLiveServerTestCase
from django.conf import settings
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from tests.factories import DeliveryFactory, ExceptionCaseFactory
from tests.support import CHROMIUM, CHROMIUM_ARGS, HAS_SERVICES

LIVE_PAGES = ["order-detail", "case-queue", "sla-dashboard"]


@pytest.mark.browser
@pytest.mark.skipif(not (CHROMIUM and HAS_SERVICES), reason="needs chromium, Redis and PostgreSQL (set by .ci/run)")
class PolicyInTheBrowserTest(ChannelsLiveServerTestCase):
    serve_static = True

    @classmethod
    def setUpClass(cls) -> None:
        # The server process names its database "test_" + NAME unless TEST.NAME is set; under
        # pytest-django NAME already is the test database.
        database = settings.DATABASES["default"]
        database.setdefault("TEST", {})["NAME"] = database["NAME"]
        super().setUpClass()

    def setUp(self) -> None:
        self.root = get_user_model().objects.create_superuser("root", "root@example.com", "unused")
        self.case = ExceptionCaseFactory(queue="finance")
        self.delivery = DeliveryFactory()
        os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"  # Playwright's sync API runs a loop here

    def tearDown(self) -> None:
        os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)

    def _session(self) -> str:
        client = Client()
        client.force_login(self.root)
        return client.cookies["sessionid"].value

    def _pages(self) -> dict[str, str]:
        return {
            "sign-in": reverse("login"),
            "order-list": reverse("order-list"),
            "order-detail": reverse("order-detail", args=[self.case.order_id]),
            "case-queue": reverse("case-queue", args=["finance"]),
            "case-detail": reverse("case-detail", args=[self.case.pk]),
            "sla-dashboard": reverse("sla-dashboard"),
            "integration-health": reverse("integration-health"),
            "subscription-detail": reverse("subscription-detail", args=[self.delivery.subscription_id]),
            "api-docs": reverse("api-docs"),
            "admin-template": reverse("admin:outbound_notificationtemplate_add"),
        }

    def test_no_page_breaks_the_policy(self) -> None:
        from playwright.sync_api import sync_playwright

        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            context = browser.new_context()
            context.add_cookies([{"name": "sessionid", "value": self._session(), "url": self.live_server_url}])
            page = context.new_page()
            refused: list[str] = []

            def on_console(message) -> None:
                if "Content Security Policy" in message.text:
                    refused.append(message.text)

            page.on("console", on_console)
            page.on("pageerror", lambda error: refused.append(str(error)))
            sockets: list[str] = []
            page.on("websocket", lambda socket: sockets.append(socket.url))

            for name, path in self._pages().items():
                page.goto(f"{self.live_server_url}{path}")
                page.wait_for_load_state("networkidle")
                if name in LIVE_PAGES:
                    page.wait_for_function("document.querySelector('[ws-connect]') !== null")
                    page.wait_for_timeout(500)  # the websocket connects
                assert refused == [], f"{name}: {refused}"

            assert len(sockets) == len(LIVE_PAGES), sockets

            page.goto(f"{self.live_server_url}{self._pages()['api-docs']}")
            page.locator(".swagger-ui .opblock").first.wait_for(timeout=15_000)

            page.goto(f"{self.live_server_url}{self._pages()['case-detail']}")
            page.get_by_role("button", name="Hide details").click()
            assert page.locator(".case-more").inner_text().strip() == ""
            assert refused == []
            browser.close()

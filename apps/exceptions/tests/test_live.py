"""Live: a finance user watches the queue while an event lands elsewhere; the new case appears.

Runs a real Daphne server in its own process, so it needs PostgreSQL (a shared database) and
Redis (a shared channel layer): both are set by .ci/run.
"""

import os
import threading
from datetime import timedelta

import pytest
from channels.testing import ChannelsLiveServerTestCase
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client
from django.utils import timezone

from apps.exceptions.roles import roles_ensure
from apps.exceptions.services import builtin_rules_ensure
from apps.timeline.events import parse_events
from apps.timeline.services import apply_events
from tests.support import CHROMIUM, CHROMIUM_ARGS, HAS_SERVICES


def _event(event_id: str, kind: str, hours_ago: int, *refs: tuple[str, str]) -> dict:
    at = (timezone.now() - timedelta(hours=hours_ago)).isoformat()
    return {
        "event_id": event_id,
        "kind": kind,
        "occurred_at": at,
        "references": [{"kind": k, "value": v} for k, v in refs],
    }


def _invoice_held_elsewhere() -> None:
    try:
        apply_events(
            parse_events(
                [
                    _event("i1", "invoice.generated", 3, ("invoice", "INV-LIVE"), ("order", "SO-LIVE")),
                    _event("h1", "invoice.held", 2, ("invoice", "INV-LIVE")),
                ]
            )
        )
    finally:
        connection.close()


@pytest.mark.browser
@pytest.mark.skipif(
    not (CHROMIUM and HAS_SERVICES),
    reason="needs chromium, Redis and PostgreSQL (set by .ci/run)",
)
class LiveQueueTest(ChannelsLiveServerTestCase):
    serve_static = True

    @classmethod
    def setUpClass(cls) -> None:
        # The server process names its database "test_" + NAME unless TEST.NAME is set; under
        # pytest-django NAME already is the test database.
        database = settings.DATABASES["default"]
        database.setdefault("TEST", {})["NAME"] = database["NAME"]
        super().setUpClass()

    def setUp(self) -> None:
        builtin_rules_ensure()
        self.finance = get_user_model().objects.create_user("fin")
        self.finance.groups.add(roles_ensure()["Finance"])
        apply_events(parse_events([_event("c1", "order.created", 50, ("order", "SO-LIVE"))]))
        os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"  # Playwright's sync API runs a loop here

    def tearDown(self) -> None:
        os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)

    def _session(self) -> str:
        """Signed in through the shared session store (the server process hashes passwords its own way)."""
        client = Client()
        client.force_login(self.finance)
        return client.cookies["sessionid"].value

    def test_a_new_case_appears_without_a_reload(self) -> None:
        from playwright.sync_api import sync_playwright

        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            context = browser.new_context()
            context.add_cookies([{"name": "sessionid", "value": self._session(), "url": self.live_server_url}])
            page = context.new_page()

            page.goto(f"{self.live_server_url}/queues/finance/")
            assert "INV-LIVE" not in page.inner_text("#queue-list")
            page.wait_for_timeout(1000)  # the websocket connects

            # Elsewhere (a worker, another request): this thread runs Playwright's event loop.
            elsewhere = threading.Thread(target=_invoice_held_elsewhere)
            elsewhere.start()
            elsewhere.join()

            page.locator("#queue-list", has_text="Invoice INV-LIVE held").wait_for(timeout=15_000)
            browser.close()

    def test_the_home_page_counts_a_new_case_without_a_reload(self) -> None:
        from playwright.sync_api import sync_playwright

        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            context = browser.new_context()
            context.add_cookies([{"name": "sessionid", "value": self._session(), "url": self.live_server_url}])
            page = context.new_page()

            page.goto(f"{self.live_server_url}/")
            finance = page.locator("#home-queue-finance")
            assert finance.locator(".count").inner_text() == "0"
            page.wait_for_timeout(1000)  # the websocket connects

            elsewhere = threading.Thread(target=_invoice_held_elsewhere)
            elsewhere.start()
            elsewhere.join()

            finance.locator(".count", has_text="1").wait_for(timeout=15_000)
            assert "SO-LIVE" in finance.inner_text()  # the new case, listed among the oldest
            browser.close()

"""A real Chromium: sign in, search a tracking number, read the timeline, at desktop and phone width."""

import pytest
from django.contrib.auth import get_user_model

from apps.exceptions.roles import roles_ensure
from apps.partners.models import Partner
from apps.timeline.services import apply_events
from tests.stories import carrier, events, manifested, order_created
from tests.support import needs_chromium

pytestmark = [
    pytest.mark.browser,
    needs_chromium,
]
PASSWORD = "browser-test-password"


@pytest.fixture
def story(transactional_db):
    Partner.objects.create(code="ACME", name="Acme Retail", kind=Partner.Kind.CUSTOMER)
    Partner.objects.create(code="UPSN", name="UPS", kind=Partner.Kind.CARRIER)
    apply_events(
        events(
            order_created("SO-4242", order={"customer": "ACME", "promised_at": "2026-11-03T17:00:00+00:00"}),
            manifested("SH-4242", "1Z999AA10123456784", "SO-4242", attributes={"carrier": "UPSN"}),
            carrier("1Z999AA10123456784", "shipment.in_transit", 20),
        )
    )
    agent = get_user_model().objects.create_user("agent", password=PASSWORD)
    agent.groups.add(roles_ensure()["Customer Service"])


def _sign_in(page, live_server) -> None:
    page.goto(f"{live_server.url}/search/?q=1z999aa10123456784")
    page.fill("input[name=username]", "agent")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit], input[type=submit]")


@pytest.mark.parametrize("width", [1280, 390])
def test_searching_a_tracking_number_lands_on_the_order_timeline(browser, live_server, story, width):
    page = browser.new_page(viewport={"width": width, "height": 900})
    _sign_in(page, live_server)

    page.wait_for_url("**/orders/*/")
    body = page.inner_text("body")
    assert "SO-4242" in body
    assert "Acme Retail" in body
    assert "1Z999AA10123456784" in body
    assert body.index("Order created") < body.index("In transit")
    assert "Late" in body  # promised on 3 November, never delivered
    overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 0, f"page scrolls sideways by {overflow}px at {width}px"

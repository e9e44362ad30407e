"""A real Chromium: an integration admin follows a dead letter to its trace, fixes the cause, replays."""

import pytest
from django.contrib.auth import get_user_model

from apps.dashboards.tests.test_trace import UNKNOWN_SENDER, create_the_notices_orders, ingest
from apps.exceptions.roles import roles_ensure
from apps.ingest.models import InboundMessage
from apps.partners.models import Channel, EdiIdentifier, Partner
from tests.support import needs_chromium

pytestmark = [
    pytest.mark.browser,
    needs_chromium,
]
PASSWORD = "browser-test-password"


@pytest.fixture
def dead_letter(transactional_db) -> InboundMessage:
    """A ship notice from a sender id nobody registered yet, and an integration admin to fix it."""
    warehouse = Partner.objects.create(code="ACME", name="Acme Warehouse", kind=Partner.Kind.WAREHOUSE)
    Channel.objects.create(partner=warehouse, code="edi", name="Acme EDI", format=Channel.Format.X12)
    admin = get_user_model().objects.create_user("integration", password=PASSWORD)
    admin.groups.add(roles_ensure()["Integration Admin"])
    create_the_notices_orders()
    message = ingest(UNKNOWN_SENDER)
    assert message.status == InboundMessage.Status.DEAD
    return message


def test_an_admin_replays_a_dead_letter_from_its_trace_at_phone_width(browser, live_server, dead_letter):
    page = browser.new_page(viewport={"width": 390, "height": 900}, timezone_id="Europe/Paris")
    # The zone the page would otherwise store and reload for, so no reload races the clicks.
    page.context.add_cookies([{"name": "tz", "value": "Europe/Paris", "url": live_server.url}])
    page.goto(f"{live_server.url}/integration/dead-letters/")
    page.fill("input[name=username]", "integration")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit], input[type=submit]")
    page.wait_for_url("**/integration/dead-letters/")

    row = page.locator(f"#message-{dead_letter.pk}")
    assert "unknown sender ZZ:NOBODYWMS" in row.inner_text()
    row.get_by_role("link", name=f"#{dead_letter.pk}").click()
    page.wait_for_url(f"**/messages/{dead_letter.pk}/trace/")

    assert "unknown sender ZZ:NOBODYWMS" in page.get_by_role("alert").inner_text()
    assert page.locator("#message-status").inner_text() == "Dead letter"
    bsn = page.locator(".segment", has_text="BSN").first
    assert "BSN02 SHP-5001" in " ".join(bsn.inner_text().split())
    overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 0, f"page scrolls sideways by {overflow}px"

    EdiIdentifier.objects.create(partner=Partner.objects.get(code="ACME"), qualifier="ZZ", value="NOBODYWMS")
    page.get_by_role("button", name="Replay").click()

    page.get_by_text("1 message queued for replay.").wait_for()
    assert page.locator("#message-status").inner_text() == "Processed"
    assert "SHP-5001" in page.locator("#applied-title + *").inner_text()
    dead_letter.refresh_from_db()
    assert dead_letter.status == InboundMessage.Status.PROCESSED

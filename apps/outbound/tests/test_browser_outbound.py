"""A real Chromium: an integration admin finds a subscription with dead deliveries, reads why one
died, and replays them all once the receiver is back, at phone width."""

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from apps.exceptions.roles import roles_ensure
from apps.outbound.models import Delivery, DeliveryAttempt, Subscription
from tests.factories import DeliveryFactory, OrderFactory, SubscriptionFactory
from tests.support import needs_chromium

pytestmark = [
    pytest.mark.browser,
    needs_chromium,
]
PASSWORD = "browser-test-password"


@pytest.fixture
def dead_deliveries(transactional_db, receiver) -> Subscription:
    """Two deliveries that died while the receiver was down (it answers again now), and an admin."""
    admin = get_user_model().objects.create_user("integration", password=PASSWORD)
    admin.groups.add(roles_ensure()["Integration Admin"])
    subscription = SubscriptionFactory(name="ERP shipment feed", target_url=receiver.url)
    died = timezone.now() - timedelta(minutes=20)
    for number in ("SO-7001", "SO-7002"):
        delivery = DeliveryFactory(
            subscription=subscription,
            order=OrderFactory(number=number),
            status=Delivery.Status.DEAD,
            attempts=8,
            dead_at=died,
            last_status_code=503,
            last_error="gave up after 8 attempts: HTTP 503",
        )
        DeliveryAttempt.objects.create(
            delivery=delivery,
            number=1,
            started_at=died,
            duration_ms=42,
            status_code=503,
            outcome="dead",
            error="HTTP 503",
            request_headers={"X-Signature": "sha256=0f0f", "X-Timestamp": "1764100000"},
            request_body='{"kind":"shipment.delivered"}',
            response_body="down for maintenance",
        )
    return subscription


def test_an_admin_replays_dead_deliveries_at_phone_width(browser, live_server, dead_deliveries, receiver):
    page = browser.new_page(viewport={"width": 390, "height": 900}, timezone_id="Europe/Paris")
    # The zone the page would otherwise store and reload for, so no reload races the clicks.
    page.context.add_cookies([{"name": "tz", "value": "Europe/Paris", "url": live_server.url}])
    page.goto(f"{live_server.url}/outbound/")
    page.fill("input[name=username]", "integration")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit], input[type=submit]")
    page.wait_for_url("**/outbound/")
    assert _wrapped_nav_links(page) == []

    row = page.locator(f"#subscription-{dead_deliveries.pk}")
    assert "ERP shipment feed" in row.inner_text()
    assert " ".join(row.locator(".count-dead").inner_text().split()) == "2"
    row.get_by_role("link", name="ERP shipment feed").click()
    page.wait_for_url(f"**/outbound/subscriptions/{dead_deliveries.pk}/")

    assert "0 pending · 0 sending · 0 delivered · 2 dead" in page.locator("#delivery-counts").inner_text()
    overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 0, f"page scrolls sideways by {overflow}px"
    first = Delivery.objects.filter(subscription=dead_deliveries).order_by("pk").first()
    page.locator(f"#delivery-{first.pk}").get_by_role("link", name=f"#{first.pk}").click()
    page.wait_for_url(f"**/outbound/deliveries/{first.pk}/")
    assert "gave up after 8 attempts: HTTP 503" in page.get_by_role("alert").inner_text()
    assert "sha256=0f0f" in page.locator("#attempt-1").inner_text()
    page.go_back()

    # Another delivery dies while the page is open: the table polls and shows it within seconds.
    late = DeliveryFactory(subscription=dead_deliveries, status=Delivery.Status.DEAD, last_error="HTTP 502")
    page.locator(f"#delivery-{late.pk}").wait_for(timeout=12_000)
    page.get_by_role("button", name="Replay all dead (3)").click()

    page.get_by_text("3 deliveries queued to send again.").wait_for()
    page.get_by_text("0 pending · 0 sending · 3 delivered · 0 dead").wait_for()
    assert page.locator(".delivery-row .badge.ok").count() == 3
    assert len(receiver.accepted) == 3
    assert all(request.signature_valid(dead_deliveries.secret) for request in receiver.requests)
    assert set(Delivery.objects.values_list("status", flat=True)) == {Delivery.Status.DELIVERED}


def _wrapped_nav_links(page) -> list[str]:
    """Main navigation links whose text breaks over more than one line."""
    return page.evaluate(
        """() => [...document.querySelectorAll('.site-nav > a')].filter(link => {
            const text = document.createRange();
            text.selectNodeContents(link);
            return text.getClientRects().length > 1;
        }).map(link => link.textContent.trim())"""
    )

"""A real Chromium on the channel mapping page at 1366 pixels: an Integration Admin pastes a
partner's sample, previews it with an edited mapping next to the current one, then saves."""

import pytest
from django.contrib.auth import get_user_model

from apps.exceptions.roles import roles_ensure
from apps.partners.models import Channel, Partner
from tests.support import needs_chromium

pytestmark = [pytest.mark.browser, needs_chromium]
PASSWORD = "browser-test-password"
SAMPLE = "Tracking No,Status,Event Time\n1Z0001,delivered,2026-11-20T14:03:00+01:00\n1Z0002,ZU,2026-11-20T15:00:00Z\n"
EDITED = (
    '{"csv": {"columns": {"tracking": "Tracking No", "status": "Status", "occurred_at": "Event Time"}, '
    '"status_codes": {"ZU": "delivered"}}}'
)


@pytest.fixture
def channel(transactional_db) -> Channel:
    carrier = Partner.objects.create(code="DPDNL", name="DPD Nederland", kind=Partner.Kind.CARRIER)
    admin = get_user_model().objects.create_user("integrator", password=PASSWORD, is_staff=True)
    admin.groups.add(roles_ensure()["Integration Admin"])
    mapping = {"csv": {"columns": {"tracking": "Tracking No", "status": "Status", "occurred_at": "Event Time"}}}
    return Channel.objects.create(
        partner=carrier, code="status-csv", format=Channel.Format.CSV, mapping_overrides=mapping
    )


def test_preview_then_save_at_1366(browser, live_server, channel):
    page = browser.new_page(viewport={"width": 1366, "height": 900})
    page.goto(f"{live_server.url}/admin/partners/channelmappingversion/channel/{channel.pk}/")
    page.fill("input[name=username]", "integrator")
    page.fill("input[name=password]", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_selector("#mapping-form")

    page.fill("textarea[name=mapping]", EDITED)
    page.fill("textarea[name=sample_text]", SAMPLE)
    page.click("input[name=preview]")
    page.wait_for_selector("#preview")

    summary = page.inner_text(".mapping-summary")
    assert "2 event(s), 1 changed" in summary
    assert "Nothing is stored or applied." in summary
    assert page.inner_text(".mapping-now-mapped") == "Now mapped: ZU"
    changed = page.locator(".mapping-events tr.changed")
    assert changed.count() == 1
    assert "shipment.status_unmapped" in changed.inner_text()
    assert page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth") <= 0
    editor, sample = page.locator("textarea[name=mapping]"), page.locator("textarea[name=sample_text]")
    assert editor.bounding_box()["y"] == pytest.approx(sample.bounding_box()["y"], abs=60)  # side by side

    page.fill("input[name=comment]", "DPD sends ZU for delivered")
    page.click("input[name=save]")
    page.wait_for_selector(".messagelist")

    assert "Saved as version 1" in page.inner_text(".messagelist")
    assert "DPD sends ZU for delivered" in page.inner_text("#history")
    channel.refresh_from_db()
    assert channel.mapping_version == 1

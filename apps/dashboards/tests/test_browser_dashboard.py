"""A real Chromium: a supply-chain manager reads the SLA dashboard for one week and drills into a miss.

The figures are those of the story in conftest.py, worked out by hand in test_kpis.py: in the week
of 1–7 Nov 2026 two orders were delivered, SO-A on time and in full (DHLX), SO-B late and short
(UPSX, 50 h in transit from its manifest).
"""

import re
from urllib.parse import urlencode

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse
from playwright.sync_api import Locator, Page, expect

from apps.exceptions.roles import roles_ensure
from tests.support import needs_chromium

pytestmark = [
    pytest.mark.browser,
    needs_chromium,
]
PASSWORD = "browser-test-password"
ZONE = "Europe/Paris"
WEEK = {"period": "custom", "start": "2026-11-01", "end": "2026-11-07"}


@pytest.fixture
def manager(transactional_db, story) -> str:
    """The story's orders, committed so the live server's thread reads them, and someone to read them.

    Tests ask for this fixture before `browser`: the story's broadcasts need a thread without
    Playwright's event loop.
    """
    manager = get_user_model().objects.create_user("manager", password=PASSWORD)
    manager.groups.add(roles_ensure()["Supply Chain"])
    return "manager"


def _sign_in(page: Page, live_server, username: str) -> None:
    # The zone the page would otherwise store and reload for, so no reload races the clicks.
    page.context.add_cookies([{"name": "tz", "value": ZONE, "url": live_server.url}])
    page.goto(f"{live_server.url}{reverse('sla-dashboard')}")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit], input[type=submit]")
    page.wait_for_url("**/dashboards/")


def _tile(page: Page, metric: str) -> Locator:
    return page.locator(f'a.tile[data-metric="{metric}"]')


def test_a_manager_picks_a_week_filters_a_carrier_and_drills_into_the_miss(manager, live_server, browser):
    page = browser.new_page(viewport={"width": 1280, "height": 900}, timezone_id=ZONE)
    _sign_in(page, live_server, manager)
    expect(page.get_by_role("heading", name="SLA dashboard", level=1)).to_be_visible()
    period = page.locator("#dashboard .period")
    otif = _tile(page, "otif")

    # The story's week, whatever today is. Each change reloads the figures in place (one request
    # at a time, the last change winning), so the period line tells when the week has arrived.
    page.select_option("#id_period", "custom")
    page.fill("#id_start", WEEK["start"])
    page.fill("#id_end", WEEK["end"])
    expect(period).to_have_text("1 Nov 2026 – 7 Nov 2026")
    expect(otif.locator(".tile-value")).to_have_text("50.0 %")
    expect(otif.locator(".tile-detail")).to_contain_text("1 of 2")
    expect(page).to_have_url(re.compile(r"/dashboards/\?(?=.*period=custom)(?=.*start=2026-11-01)(?=.*end=2026-11-07)"))
    expect(page.get_by_role("heading", name="SLA dashboard", level=1)).to_have_count(1)  # swapped, not nested

    # One carrier: UPSX carried only SO-B, 50 h in transit, neither on time nor in full.
    page.select_option("#id_partner", "UPSX")
    expect(period).to_have_text("1 Nov 2026 – 7 Nov 2026 · UPSX")
    expect(_tile(page, "transit_time").locator(".tile-value")).to_have_text("2.1 d")
    expect(otif.locator(".tile-value")).to_have_text("0.0 %")
    expect(otif.locator(".tile-detail")).to_contain_text("0 of 1")
    expect(page).to_have_url(re.compile(r"[?&]partner=UPSX(&|$)"))

    # Every partner again, then the orders behind the OTIF figure, misses first.
    page.select_option("#id_partner", "")
    expect(period).to_have_text("1 Nov 2026 – 7 Nov 2026")
    expect(otif.locator(".tile-value")).to_have_text("50.0 %")
    otif.click()
    page.wait_for_url(re.compile(r"/dashboards/drill/\?(?=.*metric=otif)(?=.*start=2026-11-01)"))
    expect(page.get_by_role("heading", name="On time in full", level=1)).to_be_visible()
    expect(page.get_by_role("status")).to_have_text("2 behind this figure, missed first.")
    rows = page.locator(".drill-table tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.first).to_contain_text("SO-B")
    expect(rows.first.locator("[data-label=Result]")).to_have_text("Missed")
    expect(rows.filter(has_text="SO-A").locator("[data-label=Result]")).to_have_text("Met")

    page.get_by_role("link", name="Show only the missed ones").click()
    page.wait_for_url(re.compile(r"[?&]missed=1(&|$)"))
    expect(page.get_by_role("status")).to_have_text("1 missed behind this figure, missed first.")
    expect(rows).to_have_count(1)
    expect(rows).to_contain_text("SO-B")
    expect(page.get_by_role("link", name="Show all")).to_be_visible()

    # The miss itself: SO-B's timeline.
    page.get_by_role("link", name="SO-B", exact=True).click()
    page.wait_for_url(re.compile(r"/orders/\d+/$"))
    expect(page.get_by_role("heading", name="Order SO-B", level=1)).to_be_visible()


def test_the_dashboard_fits_a_phone(manager, live_server, browser):
    """The same week, opened from a shared link on a phone: no sideways scroll, every chart shown."""
    width = 390
    page = browser.new_page(viewport={"width": width, "height": 844}, timezone_id=ZONE)
    _sign_in(page, live_server, manager)
    page.goto(f"{live_server.url}{reverse('sla-dashboard')}?{urlencode(WEEK)}")
    expect(page.locator("#dashboard .period")).to_have_text("1 Nov 2026 – 7 Nov 2026")
    expect(_tile(page, "otif").locator(".tile-value")).to_have_text("50.0 %")

    charts = page.locator("figure.chart svg")
    expect(charts).to_have_count(5)  # two trends, the partner comparison, the case ageing, inventory accuracy
    for chart in charts.all():
        expect(chart).to_be_visible()
        box = chart.bounding_box()
        assert box is not None
        assert box["width"] > 0
        assert box["height"] > 0
        assert 0 <= box["x"] <= box["x"] + box["width"] <= width + 1, f"a chart sticks out: {box}"
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 1, f"page scrolls sideways by {overflow}px"

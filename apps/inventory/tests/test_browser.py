"""A real Chromium: a supply-chain manager finds a stock mismatch on the inventory page, opens the
SKU's movements and chart, and finds its case in the supply-chain queue, at desktop and phone width."""

import pytest
from django.contrib.auth import get_user_model

from apps.exceptions.roles import roles_ensure
from apps.exceptions.services import builtin_rules_ensure, detect
from apps.inventory.tests.test_services import send, stock
from apps.partners.models import Partner
from tests.stories import T0
from tests.support import needs_chromium

pytestmark = [pytest.mark.browser, needs_chromium]
PASSWORD = "browser-test-password"


@pytest.fixture
def mismatch(transactional_db):
    for code, kind in (("DC1", Partner.Kind.WAREHOUSE), ("ERP", Partner.Kind.ERP)):
        Partner.objects.create(code=code, name=f"{code} site", kind=kind)
    send(stock("wms", "snapshot", 0, ("SKU-RED", "100"), ("SKU-BLUE", "40")))
    send(stock("erp", "snapshot", 0, ("SKU-RED", "80"), ("SKU-BLUE", "40")), partner="ERP")
    send(stock("pick", "adjusted", 2, ("SKU-RED", "-12"), reason="pick"))
    builtin_rules_ensure()
    detect(now=T0.replace(hour=23))
    manager = get_user_model().objects.create_user("manager", password=PASSWORD)
    manager.groups.add(roles_ensure()["Supply Chain"])


@pytest.mark.parametrize("width", [1280, 390])
def test_a_mismatch_shows_on_the_page_with_its_history_and_in_the_queue(browser, live_server, mismatch, width):
    page = browser.new_page(viewport={"width": width, "height": 900})
    page.goto(f"{live_server.url}/inventory/?mismatch=on")
    page.fill("input[name=username]", "manager")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit], input[type=submit]")

    page.wait_for_url("**/inventory/?mismatch=on")
    body = page.inner_text("body")
    assert "SKU-RED" in body
    assert "SKU-BLUE" not in body
    assert "mismatch" in body
    overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 0, f"the inventory page scrolls sideways by {overflow}px at {width}px"

    page.click("text=SKU-RED")
    page.wait_for_url("**/inventory/*/")
    assert page.locator("svg").first.is_visible()
    history = page.inner_text("body")
    assert "pick" in history
    assert "88" in history  # on hand after the pick

    page.goto(f"{live_server.url}/queues/supply_chain/")
    assert "DC1 SKU-RED: on hand 88.000 EA, book 80.000" in page.inner_text("body")

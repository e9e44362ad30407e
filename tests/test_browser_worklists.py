"""A real Chromium on the pages people work in all day: the finance queue, the order list and the
order page keep identifiers, amounts, durations and button labels on one line at 1366 and 1920
pixels, the queue's header stays in view, the queue can be worked from the keyboard, and nothing
scrolls sideways at 390 pixels."""

import time
from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from apps.exceptions.models import CaseEvent, ExceptionCase, ExceptionRule
from apps.exceptions.roles import roles_ensure
from apps.partners.models import Partner
from apps.timeline.models import Order, OrderLine, Shipment
from tests.support import needs_chromium

pytestmark = [pytest.mark.browser, needs_chromium]
PASSWORD = "browser-test-password"
NOW = timezone.now()
CASES = 40

# The elements that must not break inside themselves, on each page.
WHOLE = ".ident, .amount, .duration, #queue-list button, .order-page button, time"
ORDER_CELLS = ", ".join(
    f'.order-facts td[data-label="{label}"]' for label in ("Shipment", "Tracking", "Bill", "Invoice", "SKU", "Amount")
)
# How many lines the text of each element takes: its text's bounding box against its font size.
BROKEN = """(selector) => [...document.querySelectorAll(selector)]
  .filter((element) => element.getClientRects().length > 0 && element.textContent.trim())
  .map((element) => {
    const range = document.createRange();
    range.selectNodeContents(element);
    const lines = new Set([...range.getClientRects()].filter((r) => r.width > 0).map((r) => Math.round(r.bottom)));
    const tall = range.getBoundingClientRect().height > parseFloat(getComputedStyle(element).fontSize) * 1.9;
    return {text: element.textContent.trim(), pieces: element.getClientRects().length, lines: lines.size, tall};
  })
  .filter((found) => found.pieces > 1 || found.tall)"""
SIDEWAYS = "document.documentElement.scrollWidth - document.documentElement.clientWidth"


@pytest.fixture
def worklists(transactional_db):
    """A long finance queue with long names, an order with shipments, charges, invoices and lines."""
    customer = Partner.objects.create(
        code="LONG", name="Bergmann Haushaltswaren und Gartenbedarf GmbH & Co. KG", kind=Partner.Kind.CUSTOMER
    )
    carrier = Partner.objects.create(code="RDLN", name="Redline Freight Less-than-truckload", kind=Partner.Kind.CARRIER)
    rule = ExceptionRule.objects.create(
        code="freight_disputed", title="Freight disputed or above its quote by more than the tolerance", queue="finance"
    )
    cases = []
    for n in range(CASES):
        order = Order.objects.create(
            number=f"SO-42717{n:02d}",
            customer=customer,
            region="US-Northeast-Atlantic",
            promised_at=NOW - timedelta(days=1),
            currency="USD",
            total_amount=Decimal("1234567.89"),
        )
        opened = NOW - timedelta(days=9, hours=n)
        cases.append(
            ExceptionCase.objects.create(
                rule=rule,
                queue="finance",
                severity="high",
                subject_type="order",
                subject_id=order.pk,
                order=order,
                customer=customer,
                partner=carrier,
                region="US-Northeast-Atlantic",
                summary=f"Freight charge RDLN-14285{n:02d} disputed: billed 1,234,567.89 USD against a quote",
                amount_at_risk=Decimal("1234567.89"),
                currency="USD",
                opened_at=opened,
                due_at=opened + timedelta(days=5 if n % 2 else 14, hours=7),
            )
        )
        CaseEvent.objects.create(case=cases[-1], at=opened, action=CaseEvent.Action.OPENED)
    order = Order.objects.get(number="SO-4271700")
    for n in range(2):
        Shipment.objects.create(
            number=f"SH-ATL-11048{n}", carrier=carrier, tracking_number=f"1Z999AA1012345678{n}", manifested_at=NOW
        ).orders.add(order)
    OrderLine.objects.create(
        order=order, line_number="10", sku="GR-20560-XL-BLUE", quantity=Decimal("48"), unit_price=Decimal("12.6")
    )
    agent = get_user_model().objects.create_user("fin", password=PASSWORD)
    agent.groups.add(roles_ensure()["Finance"])
    return {"cases": cases, "order": order}


def _wait_until(page, expression: str, timeout: float = 10) -> None:
    """Poll ``expression`` in the page (``wait_for_function`` would need eval, which the CSP refuses)."""
    deadline = time.monotonic() + timeout
    while not page.evaluate(expression):
        assert time.monotonic() < deadline, f"never true: {expression}"
        page.wait_for_timeout(50)


def _page(browser, live_server, width: int, path: str):
    page = browser.new_page(viewport={"width": width, "height": 900})
    page.goto(f"{live_server.url}{path}")
    page.fill("input[name=username]", "fin")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit], input[type=submit]")
    page.wait_for_url(f"**{path}")
    return page


@pytest.mark.parametrize("width", [1366, 1920])
def test_nothing_breaks_inside_an_identifier_amount_duration_or_button(browser, live_server, worklists, width):
    order = worklists["order"]
    page = _page(browser, live_server, width, "/queues/finance/")
    for path, selector, least in [
        ("/queues/finance/", WHOLE, 5 * CASES),
        ("/orders/", WHOLE, 2 * CASES),
        (f"/orders/{order.pk}/", f"{WHOLE}, {ORDER_CELLS}", 7),
    ]:
        page.goto(f"{live_server.url}{path}")
        checked = page.evaluate(f"document.querySelectorAll({selector!r}).length")
        assert checked >= least, f"{path}: only {checked} elements to check"
        assert page.evaluate(BROKEN, selector) == [], f"{path} at {width}px"
        assert page.evaluate(SIDEWAYS) <= 0, f"{path} scrolls sideways at {width}px"
    # The queue uses the whole width of the screen.
    page.goto(f"{live_server.url}/queues/finance/")
    table = page.locator("table.cases").bounding_box()
    assert table["width"] > width - 80


@pytest.mark.parametrize("width", [1366, 1920])
def test_the_queue_header_stays_in_view_while_scrolling(browser, live_server, worklists, width):
    page = _page(browser, live_server, width, "/queues/finance/")
    header = page.locator("table.cases thead th").nth(1)
    assert header.bounding_box()["y"] > 100

    page.mouse.wheel(0, 2500)
    _wait_until(page, "window.scrollY > 2000")

    box = header.bounding_box()
    assert -1 <= box["y"] <= 1, f"the header scrolled away: {box}"
    assert header.inner_text() == "CASE" or header.inner_text().lower() == "case"
    # It is what is seen at the top, not hidden behind the rows.
    seen = page.evaluate("document.elementFromPoint(200, 5).closest('th') !== null")
    assert seen


def test_a_queue_is_worked_from_the_keyboard(browser, live_server, worklists):
    cases = sorted(worklists["cases"], key=lambda case: case.opened_at)
    page = _page(browser, live_server, 1366, "/queues/finance/")
    assert "acknowledge" in page.inner_text("#key-help")

    page.keyboard.press("j")
    page.keyboard.press("j")
    page.keyboard.press("ArrowDown")
    page.keyboard.press("k")
    second = cases[1]
    current = page.locator("tr.case-row.is-current")
    assert current.get_attribute("id") == f"case-{second.pk}"
    assert page.evaluate("document.activeElement.id") == f"case-{second.pk}"

    page.keyboard.press("x")
    assert page.locator(f"#pick-{second.pk}").is_checked()
    page.keyboard.press(" ")
    assert not page.locator(f"#pick-{second.pk}").is_checked()
    page.keyboard.press("x")

    page.keyboard.press("a")
    page.locator("#queue-status", has_text="Acknowledged 1 case.").wait_for()
    page.locator(f"#case-{second.pk} .status-acknowledged").wait_for()
    assert ExceptionCase.objects.get(pk=second.pk).status == "acknowledged"
    # The row was re-rendered and stays the current one, focused, still selected.
    _wait_until(page, f"document.activeElement.id === 'case-{second.pk}'")
    assert page.locator(f"#case-{second.pk}").get_attribute("class").split() == ["case-row", "is-current"]
    assert page.locator(f"#pick-{second.pk}").is_checked()

    page.keyboard.press("m")
    page.locator("#queue-status", has_text="Assigned to you 1 case.").wait_for()
    assert ExceptionCase.objects.get(pk=second.pk).assignee.username == "fin"

    page.keyboard.press("Enter")
    page.locator(f"#case-{second.pk}-more").get_by_text("History").wait_for()
    page.keyboard.press("Escape")
    _wait_until(page, f"document.getElementById('case-{second.pk}-more').childElementCount === 0")

    page.keyboard.press("j")
    assert page.locator("tr.case-row.is-current").get_attribute("id") == f"case-{cases[2].pk}"


def test_keys_do_nothing_while_typing(browser, live_server, worklists):
    first = min(worklists["cases"], key=lambda case: case.opened_at)
    page = _page(browser, live_server, 1366, "/queues/finance/")
    page.keyboard.press("j")
    assert page.locator("tr.case-row.is-current").get_attribute("id") == f"case-{first.pk}"

    page.locator("#bulk-note").click()
    page.keyboard.type("jax m")
    page.locator("#global-q").click()
    page.keyboard.type("ka")

    assert page.locator("#bulk-note").input_value() == "jax m"
    assert page.locator("#global-q").input_value() == "ka"
    assert page.locator("tr.case-row.is-current").get_attribute("id") == f"case-{first.pk}"
    assert not page.locator(f"#pick-{first.pk}").is_checked()
    assert ExceptionCase.objects.get(pk=first.pk).status == "open"


def test_the_pages_do_not_scroll_sideways_on_a_phone(browser, live_server, worklists):
    order = worklists["order"]
    page = _page(browser, live_server, 390, "/queues/finance/")
    for path in ("/", "/queues/finance/", "/orders/", f"/orders/{order.pk}/"):
        page.goto(f"{live_server.url}{path}")
        overflow = page.evaluate(SIDEWAYS)
        assert overflow <= 0, f"{path} scrolls sideways by {overflow}px at 390px"

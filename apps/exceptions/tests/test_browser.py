"""A real Chromium: resolve a case at phone width; finance filters a queue and invoices in bulk."""

import re
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model

from apps.billing.models import Invoice
from apps.exceptions.models import ExceptionCase, ExceptionRule
from apps.exceptions.roles import roles_ensure
from apps.exceptions.tests.test_views import make_case
from apps.partners.models import Partner
from tests.support import needs_chromium

pytestmark = [
    pytest.mark.browser,
    needs_chromium,
]
PASSWORD = "browser-test-password"


@pytest.fixture
def finance_cases(transactional_db):
    acme = Partner.objects.create(code="ACME", name="Acme Retail", kind=Partner.Kind.CUSTOMER)
    rule = ExceptionRule.objects.create(code="delivered_not_invoiced", title="Delivered, not invoiced", queue="finance")
    agent = get_user_model().objects.create_user("agent", password=PASSWORD)
    agent.groups.add(roles_ensure()["Finance"])
    return [
        make_case(rule, "SO-7001", hours_ago=30, customer=acme, amount_at_risk=Decimal("120")),
        make_case(rule, "SO-7002", hours_ago=5, customer=acme, amount_at_risk=Decimal("80")),
    ]


def test_resolving_a_case_at_phone_width(browser, live_server, finance_cases):
    first, second = finance_cases
    page = browser.new_page(viewport={"width": 390, "height": 900})
    page.goto(f"{live_server.url}/queues/finance/")
    page.fill("input[name=username]", "agent")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit], input[type=submit]")
    page.wait_for_url("**/queues/finance/")

    row = page.locator(f"#case-{first.pk}")
    assert "SO-7001" in row.inner_text()
    overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 0, f"page scrolls sideways by {overflow}px"

    row.get_by_role("button", name="Details").click()
    more = page.locator(f"#case-{first.pk}-more")
    more.get_by_text("History").wait_for()
    assert re.search(r"Opened\s+by the system", more.inner_text())

    more.get_by_role("button", name="Resolve").click()  # no reason yet: refused
    more.get_by_text("Choose a reason to resolve or dismiss.").wait_for()
    assert ExceptionCase.objects.get(pk=first.pk).status == "open"

    more.get_by_label("Reason (to resolve or dismiss)").select_option("invoiced_manually")
    more.get_by_label("Note or comment").fill("Invoice sent by hand")
    more.get_by_role("button", name="Resolve").click()

    page.locator(f"#case-{first.pk}").wait_for(state="detached")
    assert page.locator(f"#case-{second.pk}").is_visible()
    assert "Resolved 1 case." in page.locator("#queue-status").inner_text()
    assert re.search(r"Finance\s+1", page.locator("#queue-tabs").inner_text())
    case = ExceptionCase.objects.get(pk=first.pk)
    assert (case.status, case.resolution, case.resolution_note) == (
        "resolved",
        "invoiced_manually",
        "Invoice sent by hand",
    )


@pytest.fixture
def delivered_not_invoiced(transactional_db):
    """Three orders delivered two days ago and never invoiced, and one case the filter must hide."""
    from datetime import timedelta

    from django.utils import timezone

    from apps.exceptions.services import builtin_rules_ensure, detect
    from apps.timeline.events import parse_events
    from apps.timeline.services import apply_events

    builtin_rules_ensure()

    def event(event_id: str, kind: str, hours_ago: int, *refs: tuple[str, str], **fields: object) -> dict:
        at = (timezone.now() - timedelta(hours=hours_ago)).isoformat()
        references = [{"kind": kind_, "value": value} for kind_, value in refs]
        return {"event_id": event_id, "kind": kind, "occurred_at": at, "references": references, **fields}

    events = []
    for n in (1, 2, 3):
        order, tracking = ("order", f"SO-90{n}"), ("tracking", f"1Z90{n}")
        events += [
            event(f"c{n}", "order.created", 90, order, lines=[{"sku": "A", "quantity": "1", "unit_price": "40"}]),
            event(f"m{n}", "shipment.manifested", 80, ("shipment", f"SH-90{n}"), tracking, order),
            event(f"d{n}", "shipment.delivered", 50, tracking),
        ]
    held = ("invoice", "INV-4")
    events += [
        event("c4", "order.created", 90, ("order", "SO-904")),
        event("i4", "invoice.generated", 60, held, ("order", "SO-904")),
        event("h4", "invoice.held", 59, held),
    ]
    apply_events(parse_events(events))
    detect()
    finance = get_user_model().objects.create_user("fin", password=PASSWORD)
    finance.groups.add(roles_ensure()["Finance"])
    return ExceptionRule.objects.get(code="delivered_not_invoiced")


def test_finance_filters_delivered_not_invoiced_and_bulk_invoices(browser, live_server, delivered_not_invoiced):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(f"{live_server.url}/queues/finance/")
    page.fill("input[name=username]", "fin")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit], input[type=submit]")
    page.wait_for_url("**/queues/finance/")
    assert "Invoice INV-4 held" in page.inner_text("#queue-list")

    page.locator("summary", has_text="Filters").click()
    page.select_option("select[name=rule]", str(delivered_not_invoiced.pk))
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url("**rule=*")
    listed = page.inner_text("#queue-list")
    assert "INV-4" not in listed
    assert all(f"SO-90{n}" in listed for n in (1, 2, 3))

    for checkbox in page.locator("#queue-list input[name=case][type=checkbox]").all():
        checkbox.check()
    page.select_option("#bulk-action", "trigger_invoice")
    page.locator("#bulk-form").get_by_role("button", name="Apply").click()

    page.locator("#queue-status", has_text="Invoiced the orders of 3 cases.").wait_for()
    for case in ExceptionCase.objects.filter(rule=delivered_not_invoiced):
        page.locator(f"#case-{case.pk}").wait_for(state="detached")
        assert (case.status, case.resolution) == ("resolved", "auto")
    assert sorted(Invoice.objects.values_list("number", flat=True)) == [
        "INV-4",
        "INV-SO-901",
        "INV-SO-902",
        "INV-SO-903",
    ]

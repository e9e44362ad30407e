"""A real Chromium at phone width: open the finance queue, expand a case, resolve it with a reason."""

import os
import re
import shutil
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model

from apps.exceptions.models import ExceptionCase, ExceptionRule
from apps.exceptions.roles import roles_ensure
from apps.exceptions.tests.test_views import make_case
from apps.partners.models import Partner

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if not CHROMIUM and os.environ.get("REQUIRE_BROWSER"):
    raise RuntimeError("REQUIRE_BROWSER is set but no chromium is installed")
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM, reason="needs Debian's chromium (installed by .ci/run)"),
]
PASSWORD = "browser-test-password"


@pytest.fixture
def browser(monkeypatch):
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; the ORM calls around it are plain
    # synchronous calls, which Django would otherwise refuse.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"],
        )
        yield launched
        launched.close()


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

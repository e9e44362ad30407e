"""Money and queues by role: each role does what it should and is refused (403, and no button shown)
what it should not. The full matrix of pages, exports, API actions and websockets is
``tests/test_role_matrix.py``."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from apps.billing.models import Invoice
from apps.exceptions.models import ExceptionCase
from apps.exceptions.roles import roles_ensure
from apps.exceptions.services import builtin_rules_ensure, detect
from apps.timeline.events import parse_events
from apps.timeline.services import apply_events

pytestmark = pytest.mark.django_db
ACTIONS = reverse("case-actions")


def _event(event_id: str, kind: str, hours_ago: float, *refs: tuple[str, str], **fields) -> dict:
    at = (timezone.now() - timedelta(hours=hours_ago)).isoformat()
    return {
        "event_id": event_id,
        "kind": kind,
        "occurred_at": at,
        "references": [{"kind": k, "value": v} for k, v in refs],
        **fields,
    }


@pytest.fixture
def cases():
    builtin_rules_ensure()
    lines = [{"sku": "A", "quantity": "2", "unit_price": "10"}]
    apply_events(
        parse_events(
            [
                _event("c1", "order.created", 90, ("order", "SO-1"), lines=lines),
                _event("m1", "shipment.manifested", 80, ("shipment", "SH-1"), ("tracking", "1Z1"), ("order", "SO-1")),
                _event("d1", "shipment.delivered", 60, ("tracking", "1Z1")),
                _event("c2", "order.created", 90, ("order", "SO-2")),
                _event("i2", "invoice.generated", 50, ("invoice", "INV-2"), ("order", "SO-2"), amount="30"),
                _event("h2", "invoice.held", 49, ("invoice", "INV-2"), attributes={"reason": "price"}),
                _event("c3", "order.created", 90, ("order", "SO-3")),
                _event("r3", "order.released", 40, ("order", "SO-3")),
            ]
        )
    )
    detect()
    return {case.rule.code: case for case in ExceptionCase.objects.select_related("rule")}


@pytest.fixture
def people(django_user_model):
    groups = roles_ensure()
    made = {}
    for role, group in groups.items():
        user = django_user_model.objects.create_user(
            role.lower().replace(" ", "-"), is_staff=role == "Integration Admin"
        )
        user.groups.add(group)
        made[role] = user
    return made


def _act(client, user, case, action, **fields):
    client.force_login(user)
    return client.post(ACTIONS, {"case": case.pk, "action": action, **fields})


def test_finance_invoices_a_delivered_order_by_hand_and_its_case_closes(client, people, cases):
    case = cases["delivered_not_invoiced"]
    response = _act(client, people["Finance"], case, "trigger_invoice")
    assert response.status_code == 302
    case.refresh_from_db()
    assert (case.status, case.resolution) == ("resolved", "auto")
    assert Invoice.objects.filter(number="INV-SO-1", order__number="SO-1").exists()


def test_finance_releases_a_held_invoice_and_its_case_closes(client, people, cases):
    case = cases["invoice_held"]
    _act(client, people["Finance"], case, "release_hold", note="Price agreed")
    case.refresh_from_db()
    assert case.status == "resolved"
    assert Invoice.objects.get(number="INV-2").status == "released"


@pytest.mark.parametrize("role", ["Customer Service", "Supply Chain", "Integration Admin"])
def test_only_finance_moves_money(client, people, cases, role):
    assert _act(client, people[role], cases["delivered_not_invoiced"], "trigger_invoice").status_code == 403
    assert _act(client, people[role], cases["invoice_held"], "release_hold").status_code == 403
    assert not Invoice.objects.filter(number="INV-SO-1").exists()
    assert Invoice.objects.get(number="INV-2").status == "held"


@pytest.mark.parametrize(
    ("role", "code", "allowed"),
    [
        ("Supply Chain", "released_not_picked", True),
        ("Customer Service", "released_not_picked", False),
        ("Finance", "delivered_not_invoiced", True),
        ("Supply Chain", "delivered_not_invoiced", False),
    ],
)
def test_people_work_the_cases_of_their_own_queues(client, people, cases, role, code, allowed):
    response = _act(client, people[role], cases[code], "acknowledge")
    assert response.status_code == (302 if allowed else 403)
    cases[code].refresh_from_db()
    assert (cases[code].status == "acknowledged") is allowed


def test_buttons_show_only_what_the_role_allows(client, people, cases):
    client.force_login(people["Finance"])
    finance_page = client.get(reverse("case-queue", args=["finance"])).content.decode()
    assert 'id="bulk-form"' in finance_page
    assert 'value="trigger_invoice"' in finance_page
    supply_page = client.get(reverse("case-queue", args=["supply_chain"])).content.decode()
    assert 'id="bulk-form"' not in supply_page
    assert 'value="acknowledge"' not in supply_page

    client.force_login(people["Customer Service"])
    page = client.get(reverse("case-queue", args=["finance"])).content.decode()
    assert "SO-1" in page  # everyone reads every queue
    assert 'value="trigger_invoice"' not in page
    assert 'id="bulk-form"' not in page


def test_the_api_applies_the_same_rules(client, people, cases):
    url = reverse("api-case-actions", args=[cases["delivered_not_invoiced"].pk])
    client.force_login(people["Customer Service"])
    assert client.post(url, {"action": "trigger_invoice"}, content_type="application/json").status_code == 403
    assert client.post(url, {"action": "acknowledge"}, content_type="application/json").status_code == 403
    client.force_login(people["Finance"])
    response = client.post(url, {"action": "trigger_invoice"}, content_type="application/json")
    assert response.status_code == 200
    assert response.json()["status"] == "resolved"

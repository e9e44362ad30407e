# ruff: noqa: F811 - the shared fixtures are imported from test_views and requested by name
import pytest

from apps.exceptions.models import ExceptionCase
from apps.exceptions.tests.test_views import make_case
from apps.partners.services import api_token_create
from apps.timeline.models import Reference, Shipment

pytestmark = pytest.mark.django_db

from apps.exceptions.tests.test_views import cases, partners, rules, user  # noqa: E402, F401 - fixtures


@pytest.fixture
def api(client, user):
    client.force_login(user)
    return client


def test_anonymous_and_partner_tokens_are_refused(client, cases, partners):
    _, raw = api_token_create(partner=partners["UPSN"], name="t")
    auth = {"HTTP_AUTHORIZATION": f"Bearer {raw}"}
    case = cases["held"]

    assert client.get("/api/v1/cases/").status_code == 401
    assert client.get("/api/v1/cases/", **auth).status_code == 403
    assert client.get(f"/api/v1/cases/{case.pk}/", **auth).status_code == 403
    refused = client.post(
        f"/api/v1/cases/{case.pk}/actions/", {"action": "acknowledge"}, content_type="application/json", **auth
    )
    assert refused.status_code == 403
    assert ExceptionCase.objects.get(pk=case.pk).status == "open"


def test_list_with_subject_references_and_filters(api, cases, rules):
    case = cases["uninvoiced"]
    Reference.objects.create(kind="po", value="PO-1", order=case.order)
    shipment = Shipment.objects.create(number="SH-1")
    Reference.objects.create(kind="tracking", value="1Z1", shipment=shipment)
    ExceptionCase.objects.filter(pk=case.pk).update(shipment=shipment)
    ExceptionCase.objects.filter(pk=cases["held"].pk).update(status="resolved")

    everything = api.get("/api/v1/cases/").json()
    finance = api.get("/api/v1/cases/", {"queue": "finance", "status": "open"}).json()
    by_rule = api.get("/api/v1/cases/", {"rule": "invoice_held"}).json()

    assert everything["count"] == 5
    [row] = finance["results"]
    assert row["id"] == case.pk
    assert row["rule"] == "delivered_not_invoiced"
    assert row["queue"] == "finance"
    assert row["status"] == "open"
    assert row["amount_at_risk"] == "120.0000"
    assert row["assignee"] is None
    assert row["resolved_at"] is None
    assert row["opened_at"].endswith("+00:00")
    assert row["subject"] == {
        "type": "order",
        "id": case.order_id,
        "order": "SO-1",
        "shipment": "SH-1",
        "references": [{"kind": "po", "value": "PO-1"}, {"kind": "tracking", "value": "1Z1"}],
    }
    assert [r["id"] for r in by_rule["results"]] == [cases["held"].pk]
    assert api.get("/api/v1/cases/", {"queue": "sales"}).status_code == 400


def test_list_query_count_is_flat(api, rules, django_assert_max_num_queries):
    for i in range(30):
        make_case(rules["invoice_held"], f"SO-Q{i}")

    with django_assert_max_num_queries(8):
        assert len(api.get("/api/v1/cases/").json()["results"]) == 30


def test_detail_has_the_history(api, cases):
    case = cases["held"]

    body = api.get(f"/api/v1/cases/{case.pk}/").json()

    assert body["id"] == case.pk
    assert [event["action"] for event in body["history"]] == ["opened"]
    assert api.get("/api/v1/cases/999999/").status_code == 404


@pytest.mark.parametrize(
    ("payload", "status", "assigned"),
    [
        ({"action": "assign_to_me"}, "open", True),
        ({"action": "acknowledge"}, "acknowledged", False),
        ({"action": "comment", "note": "Chasing"}, "open", False),
        ({"action": "resolve", "reason_code": "fixed_at_source", "note": "ok"}, "resolved", False),
        ({"action": "dismiss", "reason_code": "not_an_issue"}, "dismissed", False),
    ],
)
def test_actions_call_the_services_and_write_history(api, cases, user, payload, status, assigned):
    case = cases["held"]

    response = api.post(f"/api/v1/cases/{case.pk}/actions/", payload, content_type="application/json")

    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["status"] == status
    assert body["assignee"] == ("agent" if assigned else None)
    last = body["history"][-1]
    assert last["actor"] == "agent"
    assert last["reason_code"] == payload.get("reason_code", "")


def test_bad_actions_get_clear_errors(api, cases):
    case = cases["held"]
    url = f"/api/v1/cases/{case.pk}/actions/"

    no_reason = api.post(url, {"action": "resolve"}, content_type="application/json")
    no_note = api.post(url, {"action": "comment"}, content_type="application/json")
    unknown = api.post(url, {"action": "explode"}, content_type="application/json")
    api.post(url, {"action": "dismiss", "reason_code": "duplicate"}, content_type="application/json")
    again = api.post(url, {"action": "resolve", "reason_code": "other"}, content_type="application/json")

    assert no_reason.status_code == 400
    assert "reason" in no_reason.json()["reason_code"][0]
    assert no_note.status_code == 400
    assert unknown.status_code == 400
    assert again.status_code == 409
    assert "dismissed" in again.json()["detail"]

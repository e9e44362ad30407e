import json
from io import StringIO

import pytest
from django.core.management import call_command

from apps.timeline.tests.conftest import create_order, event, ref

pytestmark = pytest.mark.django_db


def test_anonymous_requests_must_authenticate(client, story):
    assert client.get("/api/v1/orders/", {"ref": "SO-100001"}).status_code == 401
    assert client.get(f"/api/v1/orders/{story.pk}/").status_code == 401


def test_list_resolves_a_reference_with_references_stage_and_times(agent_client, story):
    response = agent_client.get("/api/v1/orders/", {"ref": "bol-55"})

    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 1
    [order] = body["results"]
    assert order["id"] == story.pk
    assert order["number"] == "SO-100001"
    assert order["customer"] == "ACME"
    assert order["stage"] == "invoiced"
    assert order["url"] == f"http://testserver/api/v1/orders/{story.pk}/"
    assert order["matched_by"] == [{"kind": "bol", "value": "BOL-55", "exact": True}]
    assert {"kind": "po", "value": "PO-SO-100001"} in order["references"]
    assert {"kind": "tracking", "value": "1Z999AA10123456784"} in order["references"]
    assert {"kind": "invoice", "value": "INV-7001"} in order["references"]
    assert order["shipped_at"].endswith("+00:00")
    assert order["delivered_at"] is None


def test_list_returns_every_candidate_and_nothing_for_unknown_references(agent_client, partners, apply):
    apply(
        create_order("SO-300001", 20, promised_hours_ago=-48),
        create_order("SO-300002", 20, promised_hours_ago=-48),
        event(
            "c",
            "shipment.manifested",
            10,
            ref("shipment", "SH-C1"),
            ref("order", "SO-300001"),
            ref("order", "SO-300002"),
        ),
    )

    several = agent_client.get("/api/v1/orders/", {"ref": "SH-C1"}).json()
    none = agent_client.get("/api/v1/orders/", {"ref": "NOPE-1"}).json()

    assert [o["number"] for o in several["results"]] == ["SO-300001", "SO-300002"]
    assert none["count"] == 0
    assert none["results"] == []


def test_list_query_count_is_flat(agent_client, partners, apply, django_assert_max_num_queries):
    apply(*(create_order(f"SO-40000{i}", 10, promised_hours_ago=-48) for i in range(9)))

    with django_assert_max_num_queries(14):  # two of them read the person's permissions
        body = agent_client.get("/api/v1/orders/", {"ref": "SO-40000"}).json()

    assert body["count"] == 9


@pytest.mark.parametrize("params", [{}, {"ref": ""}, {"ref": "x" * 101}])
def test_a_missing_or_bad_ref_is_a_400_with_a_machine_readable_body(agent_client, params):
    response = agent_client.get("/api/v1/orders/", params)

    assert response.status_code == 400
    assert list(response.json()) == ["ref"]


def test_detail_is_the_same_document_as_the_timeline_command(agent_client, story):
    out = StringIO()
    call_command("timeline", "SO-100001", "--json", stdout=out)

    response = agent_client.get(f"/api/v1/orders/{story.pk}/")

    assert response.status_code == 200
    assert response.json() == json.loads(out.getvalue())


def test_detail_of_an_unknown_order_is_a_404(agent_client):
    response = agent_client.get("/api/v1/orders/999999/")

    assert response.status_code == 404
    assert "detail" in response.json()


def test_the_schema_documents_both_endpoints(agent_client):
    response = agent_client.get("/api/schema/", {"format": "json"})  # the schema view reads ?format=

    assert response.status_code == 200
    paths = response.json()["paths"]
    assert "/api/v1/orders/" in paths
    assert "/api/v1/orders/{id}/" in paths
    parameters = {p["name"] for p in paths["/api/v1/orders/"]["get"]["parameters"]}
    assert "ref" in parameters

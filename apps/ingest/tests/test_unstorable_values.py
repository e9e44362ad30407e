"""Values no database can hold (a NUL character, a time before year 1900) are refused with the
field that holds them, before anything is stored or applied; the rest of a document still goes in."""

from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.urls import reverse

from apps.ingest.models import InboundMessage
from apps.timeline.models import Order

from .conftest import as_body, order_created

pytestmark = pytest.mark.django_db(transaction=True)
EVENTS = reverse("api-events")


@pytest.mark.parametrize(
    ("event", "field"),
    [
        (order_created(references=[{"kind": "order", "value": "SO-1\u0000"}]), "events[0]"),
        (order_created(attributes={"note": {"lines": ["ok", "bad\u0000"]}}), "events[0]"),
        (order_created(event_id="SO-1\u0000created"), "events[0]"),
        (order_created(occurred_at="0001-01-01T00:00:00+12:00"), "events[0]"),
        (order_created(order={"promised_at": "2300-01-01T00:00:00+00:00"}), "events[0]"),
    ],
    ids=["nul-in-reference", "nul-deep-in-attributes", "nul-in-event-id", "year-1-ahead-of-utc", "year-2300"],
)
def test_the_api_refuses_an_event_it_could_not_store_with_a_400(erp_api, event, field):
    response = erp_api.post(EVENTS, as_body(event), content_type="application/json")

    assert response.status_code == 400, response.content
    assert any(error.startswith(field) for error in response.json()["errors"]), response.json()
    assert not InboundMessage.objects.exists()
    assert not Order.objects.exists()


def test_a_file_with_one_unstorable_event_applies_the_others_and_says_which(erp, tmp_path: Path):
    path = tmp_path / "orders.json"
    path.write_bytes(as_body(order_created("SO-1"), order_created("SO-2", event_id="SO-2\u0000x")))

    call_command("ingest", str(path), partner=erp.code, format="json", sync=True, stdout=StringIO())

    message = InboundMessage.objects.get()
    assert message.status == InboundMessage.Status.PARTIALLY_PROCESSED
    assert "NUL" in " ".join(message.warnings)
    assert list(Order.objects.values_list("number", flat=True)) == ["SO-1"]


def test_a_file_whose_text_spells_out_a_nul_escape_is_stored_as_written(erp, tmp_path: Path):
    """Six characters ``\\u0000`` in a text are no NUL: the file takes the careful path, and keeps them."""
    path = tmp_path / "orders.json"
    path.write_bytes(as_body(order_created("SO-1", attributes={"note": "escaped \\u0000 as text"})))

    call_command("ingest", str(path), partner=erp.code, format="json", sync=True, stdout=StringIO())

    assert InboundMessage.objects.get().status == InboundMessage.Status.PROCESSED
    assert Order.objects.get().milestones.get().payload["attributes"]["note"] == "escaped \\u0000 as text"

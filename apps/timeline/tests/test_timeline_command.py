import json
from datetime import datetime
from io import StringIO

import pytest
from django.core.management import CommandError, ManagementUtility, call_command

from apps.timeline.tests.conftest import create_order, event, ref

pytestmark = pytest.mark.django_db


def run(*args: str) -> str:
    out = StringIO()
    call_command("timeline", *args, stdout=out)
    return out.getvalue()


def test_text_output_is_a_readable_timeline(story):
    out = run("1z999aa10123456784")

    assert out.splitlines()[0] == "Order SO-100001 - Acme Retail - Invoiced  [LATE, AT RISK]"
    kinds = [
        "Order created",
        "Picked",
        "Shipment manifested",
        "In transit",
        "New delivery estimate",
        "Invoice generated",
    ]
    positions = [out.index(f"  {kind}  (from ") for kind in kinds]
    assert positions == sorted(positions)
    assert "In transit  (from UPSN/hook)" in out
    assert "Tracking 1Z999AA10123456784  @ Paris, FR" in out
    assert "SH-9001  carrier UPSN  tracking 1Z999AA10123456784  In transit" in out
    assert "INV-7001: 60.0000 EUR Generated" in out


def test_json_output_has_the_whole_timeline_with_offsets_and_decimal_strings(story):
    data = json.loads(run("SO-100001", "--json"))

    assert set(data) == {"order", "lines", "shipments", "milestones", "freight_charges", "invoices", "returns"}
    order = data["order"]
    assert order["number"] == "SO-100001"
    assert order["customer"] == "ACME"
    assert order["stage"] == "invoiced"
    assert order["total_amount"] == "62.5000"
    assert order["invoiced_amount"] == "60.0000"
    assert order["late"] is True
    assert datetime.fromisoformat(order["promised_at"]).utcoffset() is not None
    assert [line["sku"] for line in data["lines"]] == ["SKU-1", "SKU-2"]
    assert data["lines"][0]["quantity"] == "5.000"
    assert data["shipments"][0]["tracking_number"] == "1Z999AA10123456784"
    assert data["shipments"][0]["at_risk"] is True
    assert [m["event_id"] for m in data["milestones"]] == [
        "SO-100001-created",
        "pick-1",
        "ship-1",
        "ups-transit",
        "ups-eta",
        "inv-1",
    ]
    transit = data["milestones"][3]
    assert transit["kind"] == "shipment.in_transit"
    assert transit["source"] == {"partner": "UPSN", "channel": "hook", "message": None}
    assert transit["references"] == [{"kind": "tracking", "value": "1Z999AA10123456784"}]
    assert transit["occurred_at"].endswith("+00:00")
    assert all(datetime.fromisoformat(m["occurred_at"]).utcoffset() is not None for m in data["milestones"])
    assert data["invoices"] == [
        {
            "number": "INV-7001",
            "status": "generated",
            "amount": "60.0000",
            "currency": "EUR",
            "hold_reason": "",
            "generated_at": data["milestones"][5]["occurred_at"],
            "held_at": None,
            "released_at": None,
            "posted_at": None,
        }
    ]
    assert data["freight_charges"] == []
    assert data["returns"] == []


def test_json_includes_freight_charges_and_returns(story, apply):
    apply(
        event(
            "fr-1",
            "freight.charge_posted",
            40,
            ref("pro", "PRO-1"),
            ref("shipment", "SH-9001"),
            amount="18.40",
            currency="EUR",
            attributes={"charge_number": "FB-1"},
        ),
        partner="UPSN",
    )
    apply(event("rma-1", "return.authorized", 30, ref("rma", "RMA-1"), ref("order", "SO-100001")), partner="ERP")

    data = json.loads(run("RMA-1", "--json"))

    assert data["freight_charges"][0]["number"] == "FB-1"
    assert data["freight_charges"][0]["amount"] == "18.4000"
    assert data["freight_charges"][0]["shipment"] == "SH-9001"
    assert data["returns"][0]["number"] == "RMA-1"


def test_nothing_found_is_an_error(story):
    with pytest.raises(CommandError, match="No order found for 'NOPE-1'"):
        run("NOPE-1")


def test_several_orders_is_an_error_listing_the_candidates(partners, apply):
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

    with pytest.raises(CommandError) as error:
        run("SH-C1")

    message = str(error.value)
    assert "2 orders match 'SH-C1'" in message
    assert "SO-300001  (Shipment SH-C1)" in message
    assert "SO-300002  (Shipment SH-C1)" in message


def test_errors_exit_with_a_non_zero_status(db, capsys):
    # run_from_argv, as manage.py does, but without setting Django up again: that would rebind
    # the root log handler to this test's captured stderr for every later test on the worker.
    command = ManagementUtility(["manage.py"]).fetch_command("timeline")
    with pytest.raises(SystemExit) as exit_info:
        command.run_from_argv(["manage.py", "timeline", "NOPE-1"])

    assert exit_info.value.code == 1
    assert "No order found for 'NOPE-1'" in capsys.readouterr().err

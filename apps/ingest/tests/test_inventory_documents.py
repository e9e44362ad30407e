"""Stock and returns documents: X12 846, 947 and 180, EDIFACT INVRPT, each sample with its events."""

from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from apps.ingest.parsers import edifact, x12
from apps.ingest.parsers.base import ParseContext
from apps.ingest.tests.test_x12_support import document, envelope, one_line, transaction, wrapped
from apps.timeline.events import EventKind

CHICAGO = ParseContext(partner="NORTHSTAR", time_zone="America/Chicago")
CHICAGO_WINTER = timezone(timedelta(hours=-6))
BRUSSELS = ZoneInfo("Europe/Brussels")
EDIFACT_DOCUMENTS = Path(__file__).parent / "documents" / "edifact"


def parse_x12(text: str, context: ParseContext = CHICAGO):
    return x12.parse(text.encode("latin-1"), context)


def parse_edifact(name: str, context: ParseContext):
    return edifact.parse((EDIFACT_DOCUMENTS / name).read_bytes(), context)


def lines(event) -> list[tuple[str, str, str]]:
    return [(line.sku, str(line.quantity), line.uom) for line in event.lines]


def refs(event) -> list[tuple[str, str]]:
    return [(ref.kind.value, ref.value) for ref in event.references]


def ack_status(parsed) -> list[str]:
    return [ack.status for ack in parsed.acknowledgments]


# 846 ---------------------------------------------------------------------------------------------


def test_846_snapshot_per_warehouse_with_on_hand_first_and_every_quantity_kept():
    parsed = parse_x12(document("846_inventory_advice.edi"))

    own, east, west = parsed.events
    assert {event.kind for event in parsed.events} == {EventKind.INVENTORY_SNAPSHOT}
    # Two LIN loops of SKU-RED-M (two lots) add up; VP-BLUE-L reports only what is available.
    assert lines(own) == [("SKU-RED-M", "150", "EA"), ("VP-BLUE-L", "14", "CA"), ("SKU-GREEN-S", "7.5", "LB")]
    assert own.attributes == {
        # N1*WH names the sender by its interchange id (ISA06): its own stock.
        "warehouse": "NORTHSTAR",
        "report": "INV-20261120-01",
        "report_type": "DD",
        "quantities": {
            "SKU-RED-M": {"on_hand": "150", "available": "126", "on_order": "48"},
            "VP-BLUE-L": {"available": "14"},
            "SKU-GREEN-S": {"on_hand": "7.5", "in_transit": "20"},
        },
    }
    assert (own.location.name, own.location.city, own.location.state) == ("NORTHSTAR DC JOLIET", "JOLIET", "IL")
    assert own.occurred_at == datetime(2026, 11, 20, 6, 0, tzinfo=CHICAGO_WINTER)
    assert own.references == []
    # The SDQ splits SKU-ORANGE-S's 60 on hand between two locations the sender does not map.
    assert (east.attributes["warehouse"], lines(east)) == ("CT-DC-EAST", [("SKU-ORANGE-S", "45", "EA")])
    assert (west.attributes["warehouse"], lines(west)) == ("CT-DC-WEST", [("SKU-ORANGE-S", "15", "EA")])
    assert parsed.unmapped_codes == ["QTY01:ZZ"]
    assert any("QTY01 'ZZ'" in text and "SKU-ORANGE-S" in text for text in parsed.unsupported)
    assert any("'SKU-PURPLE-XL'" in text and "stock position" in text for text in parsed.unsupported)
    assert parsed.warnings == []
    assert ack_status(parsed) == ["accepted"]


def test_846_channel_maps_locations_and_quantity_qualifiers():
    context = ParseContext(
        partner="NORTHSTAR",
        time_zone="America/Chicago",
        mapping={"warehouses": {"ct-dc-east": "DC-EAST"}, "quantity_qualifiers": {"ZZ": "on_hold", "17": "available"}},
    )
    parsed = parse_x12(document("846_inventory_advice.edi"), context)

    assert [event.attributes["warehouse"] for event in parsed.events] == ["NORTHSTAR", "DC-EAST", "CT-DC-WEST"]
    # 17 read as available: the line takes it only where nothing is on hand, and SKU-RED-M sums both.
    assert lines(parsed.events[0])[0] == ("SKU-RED-M", "276", "EA")
    assert parsed.unmapped_codes == []


def test_846_event_ids_survive_a_resend_in_another_interchange():
    text = document("846_inventory_advice.edi")
    resent = text.replace("000004211", "000009999").replace("*4211*", "*9999*").replace("*4211~", "*9999~")
    first, again = parse_x12(text), parse_x12(wrapped(resent))
    assert [e.event_id for e in first.events] == [e.event_id for e in again.events]


def test_846_without_bia_is_rejected_and_says_why():
    body = transaction("846", ["N1*WH*DC*9*ACMEWMS", "LIN*1*SK*A-1", "QTY*17*5*EA"])
    parsed = parse_x12(envelope(body, functional_id="IB"))

    assert parsed.events == []
    assert any("rejected: required segment BIA is missing" in warning for warning in parsed.warnings)
    assert ack_status(parsed) == ["rejected"]


def test_846_unreadable_quantity_and_item_without_id_are_warnings():
    body = transaction(
        "846",
        ["BIA*00*DD*R-1*20261120", "LIN*1*SK*A-1", "QTY*17*lots*EA", "QTY*33*4*EA", "LIN*2", "QTY*17*9*EA"],
    )
    parsed = parse_x12(one_line(envelope(body, functional_id="IB")))

    [event] = parsed.events
    assert lines(event) == [("A-1", "4", "EA")]
    assert any("QTY02: expected a number, found 'lots'" in warning for warning in parsed.warnings)
    assert any("expected a product identifier" in warning for warning in parsed.warnings)
    assert ack_status(parsed) == ["accepted_with_errors"]


def test_846_without_items_is_rejected():
    parsed = parse_x12(envelope(transaction("846", ["BIA*00*DD*R-2*20261120"]), functional_id="IB"))
    assert parsed.events == []
    assert any("expected LIN items" in warning for warning in parsed.warnings)


def test_846_cancellation_is_reported_not_applied():
    body = transaction("846", ["BIA*01*DD*R-3*20261120", "LIN*1*SK*A-1", "QTY*17*5*EA"])
    parsed = parse_x12(envelope(body, functional_id="IB"))
    assert parsed.events == []
    assert parsed.unsupported == ["X12 846 cancellation (BIA01 '01') of report 'R-3' is not supported"]


def test_846_under_a_wrong_functional_group_is_accepted_with_errors():
    body = transaction("846", ["BIA*00*DD*R-4*20261120", "LIN*1*SK*A-1", "QTY*17*5*EA"])
    parsed = parse_x12(envelope(body, functional_id="SH"))
    assert len(parsed.events) == 1
    assert any("expected 'IB' for a 846 set" in warning for warning in parsed.warnings)


def test_846_without_a_partner_or_warehouse_names_none():
    body = transaction("846", ["BIA*00*DD*R-5*20261120", "LIN*1*SK*A-1", "QTY*17*5*EA"])
    parsed = parse_x12(envelope(body, functional_id="IB"), ParseContext(time_zone="UTC"))
    assert "warehouse" not in parsed.events[0].attributes


# 947 ---------------------------------------------------------------------------------------------


def test_947_adjustments_by_reason_with_signed_quantities():
    parsed = parse_x12(document("947_adjustments.edi"))

    count, damaged, increase = parsed.events
    assert {event.kind for event in parsed.events} == {EventKind.INVENTORY_ADJUSTED}
    # AA (physical count) keeps the sign sent; AU (damaged) is a decrease; 56 is an increase.
    assert lines(count) == [("SKU-RED-M", "-3", "EA"), ("SKU-ORANGE-S", "4", "EA")]
    assert lines(damaged) == [("SKU-RED-M", "-2", "EA")]
    assert lines(increase) == [("SKU-GREEN-S", "10", "LB")]
    assert count.attributes == {
        "warehouse": "NORTHSTAR",
        "adjustment": "ADJ-88120",
        "reason_code": "AA",
        "reason": "physical count",
    }
    assert damaged.attributes["reason"] == "damaged in facility"
    assert count.occurred_at == datetime(2026, 11, 21, tzinfo=CHICAGO_WINTER)
    assert count.location.name == "NORTHSTAR DC JOLIET"
    # 05 puts stock on hold: a status, not a quantity on hand.
    assert parsed.unsupported == [
        "X12 947 W19 reason 05 (product put on hold) for 'VP-BLUE-L': a status change, not a change of the "
        "quantity on hand; not applied"
    ]
    assert parsed.warnings == []
    assert ack_status(parsed) == ["accepted"]


def test_947_unknown_reason_code_is_a_warning_and_applied_as_sent():
    body = transaction("947", ["W15*20261121*ADJ-9", "N1*WH*DC*9*ACMEWMS", "LX*1", "W19*Q7*-5*EA**SK*A-1"])
    parsed = parse_x12(envelope(body, functional_id="AW"))

    [event] = parsed.events
    assert lines(event) == [("A-1", "-5", "EA")]
    assert event.attributes["reason_code"] == "Q7"
    assert "reason" not in event.attributes
    assert parsed.unmapped_codes == ["W1901:Q7"]
    assert any("unknown adjustment reason 'Q7' for 'A-1'" in warning for warning in parsed.warnings)
    assert ack_status(parsed) == ["accepted_with_errors"]


def test_947_channel_gives_a_code_its_effect():
    body = transaction("947", ["W15*20261121*ADJ-10", "LX*1", "W19*Q7*5*EA**SK*A-1", "W19*06*-2*EA**SK*B-1"])
    context = ParseContext(partner="NORTHSTAR", time_zone="UTC", mapping={"adjustment_reasons": {"q7": "decrease"}})
    parsed = parse_x12(envelope(body, functional_id="AW"), context)

    assert [lines(event) for event in parsed.events] == [[("A-1", "-5", "EA")], [("B-1", "-2", "EA")]]
    assert parsed.unmapped_codes == []


def test_947_without_items_is_rejected():
    parsed = parse_x12(envelope(transaction("947", ["W15*20261121*ADJ-11"]), functional_id="AW"))
    assert parsed.events == []
    assert any("expected W19 adjustment items" in warning for warning in parsed.warnings)


# 180 ---------------------------------------------------------------------------------------------


def test_180_authorization_then_receipt():
    parsed = parse_x12(document("180_returns.edi"), ParseContext(partner="ERP", time_zone="America/Chicago"))

    authorized, received = parsed.events
    assert authorized.kind == EventKind.RETURN_AUTHORIZED
    assert refs(authorized) == [
        ("rma", "RMA-55120"),
        ("po", "PO-77001"),
        ("order", "SO-1001"),
        ("invoice", "INV-90017"),
    ]
    assert lines(authorized) == [("SKU-RED-M", "2", "EA"), ("VP-BLUE-L", "1", "CA")]
    assert authorized.occurred_at == datetime(2026, 11, 22, 9, 25, tzinfo=CHICAGO_WINTER)
    assert authorized.attributes == {"reason_code": "DM", "reason": "DAMAGED IN TRANSIT", "disposition": "RF"}
    assert authorized.location.name == "NORTHSTAR DC JOLIET"

    assert received.kind == EventKind.RETURN_RECEIVED
    assert refs(received) == [("rma", "RMA-55120"), ("order", "SO-1001")]
    assert lines(received) == [("SKU-RED-M", "2", "EA")]
    assert received.occurred_at == datetime(2026, 11, 25, 13, 52, tzinfo=ZoneInfo("America/Chicago"))
    assert ack_status(parsed) == ["accepted"]


def test_180_request_is_not_an_authorization():
    body = transaction("180", ["BGN*13*RMA-1*20261122", "BLI*SK*A-1*1*EA"])
    parsed = parse_x12(envelope(body, functional_id="AN"))
    assert parsed.events == []
    assert "request for a return authorization" in parsed.unsupported[0]


def test_180_without_an_rma_number_is_rejected():
    parsed = parse_x12(envelope(transaction("180", ["BGN*00**20261122", "BLI*SK*A-1*1*EA"]), functional_id="AN"))
    assert parsed.events == []
    assert any("expected an RMA number" in warning for warning in parsed.warnings)
    assert ack_status(parsed) == ["rejected"]


# EDIFACT INVRPT ----------------------------------------------------------------------------------


def test_invrpt_inventory_report_per_warehouse():
    context = ParseContext(
        partner="GENT", time_zone="Europe/Brussels", mapping={"warehouses": {"5412345000037": "GENT-ZUID"}}
    )
    parsed = parse_edifact("invrpt_stock_d96a.edi", context)

    own, mapped, unknown = parsed.events
    assert {event.kind for event in parsed.events} == {EventKind.INVENTORY_SNAPSHOT}
    assert lines(own) == [("SKU-1", "120", "PCE"), ("SKU-2", "7.5", "KGM")]
    assert own.attributes == {
        "message_type": "INVRPT",
        "report": "INVR-20261120",
        # NAD+WH names the UNB sender: its own stock.
        "warehouse": "GENT",
        "quantities": {"SKU-1": {"on_hand": "120", "on_order": "40"}, "SKU-2": {"on_hand": "7.5", "unusable": "0.5"}},
    }
    assert own.occurred_at == datetime(2026, 11, 20, 6, 0, tzinfo=BRUSSELS)
    assert (own.location.name, own.location.city, own.location.country) == ("Entrepot Gent Noord", "Gent", "BE")
    # A LOC after the QTY is the figure's own place.
    assert (mapped.attributes["warehouse"], lines(mapped)) == ("GENT-ZUID", [("5410000100031", "80", "PCE")])
    assert (unknown.attributes["warehouse"], lines(unknown)) == ("5412345000044", [("5410000100031", "20", "PCE")])
    assert parsed.unmapped_codes == ["QTY:198"]
    assert any("quantity qualifier '198' is not known" in warning for warning in parsed.warnings)


def test_invrpt_movement_advice_on_one_line():
    context = ParseContext(
        partner="GENT", time_zone="Europe/Brussels", mapping={"warehouses": {"5412345000037": "GENT-ZUID"}}
    )
    parsed = parse_edifact("invrpt_movements_one_line.edi", context)

    out, into, elsewhere = parsed.events
    assert {event.kind for event in parsed.events} == {EventKind.INVENTORY_ADJUSTED}
    assert (lines(out), out.attributes["reason_code"]) == ([("SKU-1", "-3", "PCE")], "11")
    assert (lines(into), into.attributes["reason_code"]) == ([("SKU-1", "10", "PCE")], "14")
    assert (lines(elsewhere), elsewhere.attributes["warehouse"]) == ([("SKU-2", "-0.5", "KGM")], "GENT-ZUID")
    assert out.attributes["warehouse"] == "GENT"
    assert out.occurred_at == datetime(2026, 11, 21, tzinfo=BRUSSELS)
    assert parsed.unmapped_codes == ["INV:7"]
    assert any("movement direction '7'" in warning for warning in parsed.warnings)


def test_invrpt_event_ids_are_stable_across_resends():
    text = (EDIFACT_DOCUMENTS / "invrpt_stock_d96a.edi").read_text()
    resent = text.replace("INV4402", "INV5000").replace("261120:0615", "261120:0700")
    context = ParseContext(partner="GENT", time_zone="Europe/Brussels")
    first = parse_edifact("invrpt_stock_d96a.edi", context)
    again = edifact.parse(resent.encode(), context)
    assert [e.event_id for e in first.events] == [e.event_id for e in again.events]


@pytest.mark.parametrize("bad", ["NOT A NUMBER", ""])
def test_invrpt_bad_quantity_is_a_warning(bad):
    body = (
        "UNB+UNOA:2+SENDER+US+261120:0600+1'UNH+1+INVRPT:D:96A:UN'BGM+35+R-1+9'DTM+137:20261120:102'"
        f"LIN+1++A-1:SA'QTY+145:{bad}:PCE'LIN+2++B-1:SA'QTY+145:3:PCE'UNT+8+1'UNZ+1+1'"
    )
    parsed = edifact.parse(body.encode(), ParseContext(partner="GENT", time_zone="UTC"))
    [event] = parsed.events
    assert lines(event) == [("B-1", "3", "PCE")]
    if bad:
        assert any("'NOT A NUMBER' is not a number" in warning for warning in parsed.warnings)

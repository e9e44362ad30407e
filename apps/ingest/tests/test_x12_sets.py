"""Mapping each transaction set to canonical events."""

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from apps.ingest.parsers import x12
from apps.ingest.parsers.base import ParseContext
from apps.ingest.parsers.x12_sets import DEFAULT_STATUS_CODES
from apps.ingest.tests.test_x12_support import CONTEXT, document, envelope, transaction
from apps.timeline.events import EventKind

CHICAGO_WINTER = timezone(timedelta(hours=-6))


def parse_text(text: str, context: ParseContext = CONTEXT):
    return x12.parse(text.encode("latin-1"), context)


def refs(event) -> list[tuple[str, str]]:
    return [(ref.kind.value, ref.value) for ref in event.references]


def lines(event) -> list[tuple[str, str, str, str | None]]:
    return [(line.sku, str(line.quantity), line.uom, line.order) for line in event.lines]


# 856 ---------------------------------------------------------------------------------------------


def test_856_shipment_order_pack_item():
    parsed = parse_text(document("856_sopi.edi"))

    [event] = parsed.events
    assert event.kind == EventKind.SHIPMENT_MANIFESTED
    assert refs(event) == [
        ("shipment", "SHP-5001"),
        ("bol", "BOL-778812"),
        ("pro", "PRO-445566"),
        ("po", "PO-77001"),
        ("order", "SO-1001"),
        ("po", "PO-77002"),
        ("tracking", "1Z999AA10123456784"),
        ("container", "00012345600000000017"),
        ("container", "00012345600000000024"),
    ]
    assert lines(event) == [
        ("SKU-RED-M", "12", "EA", "PO-77001"),
        ("VP-BLUE-L", "4", "EA", "PO-77001"),
        ("SKU-GREEN-S", "6.5", "KG", "PO-77002"),
    ]
    assert event.occurred_at == datetime(2026, 11, 20, 13, 30, tzinfo=CHICAGO_WINTER)
    assert event.estimated_delivery_at == datetime(2026, 11, 24, 17, 0, tzinfo=CHICAGO_WINTER)
    assert event.attributes == {"carrier": "ABFS"}
    assert (event.location.name, event.location.city, event.location.country) == ("ACME DC LYON", "LYON", "FR")
    assert event.raw.startswith("ST*856*0001~\nBSN*00*SHP-5001")
    assert event.source.partner is None


SHIPMENT_HEADER = ["BSN*00*SHP-9*20261120*1400*0002"]


@pytest.mark.parametrize(
    ("hierarchy", "expected_lines"),
    [
        (  # S/O/I with HL04 child codes
            [
                "HL*1**S*1",
                "REF*BM*BOL-9",
                "HL*2*1*O*1",
                "PRF*PO-1",
                "HL*3*2*I*0",
                "LIN**SK*A-1",
                "SN1**2*EA",
                "HL*4*1*O*1",
                "PRF*PO-2",
                "HL*5*4*I*0",
                "LIN**BP*B-1*UP*0001",
                "SN1**3*CS",
            ],
            [("A-1", "2", "EA", "PO-1"), ("B-1", "3", "CS", "PO-2")],
        ),
        (  # S/I: no order level
            ["HL*1**S", "REF*BM*BOL-9", "HL*2*1*I", "LIN*1*UP*0001", "SN1*1*7*EA"],
            [("0001", "7", "EA", None)],
        ),
        (  # no HL02 at all: parents found by level
            ["HL*1**S", "REF*BM*BOL-9", "HL*2**O", "REF*VN*SO-2", "HL*3**P", "HL*4**I", "LIN**VP*V-1", "SN1**1"],
            [("V-1", "1", "EA", "SO-2")],
        ),
        (["HL*1**S", "REF*BM*BOL-9"], []),  # S alone
    ],
    ids=["S-O-I", "S-I", "no-HL02", "S-only"],
)
def test_856_hierarchies(hierarchy, expected_lines):
    parsed = parse_text(envelope(transaction("856", SHIPMENT_HEADER + hierarchy)))

    assert parsed.warnings == []
    [event] = parsed.events
    assert refs(event)[:2] == [("shipment", "SHP-9"), ("bol", "BOL-9")]
    assert lines(event) == expected_lines
    # No DTM*011: BSN03/BSN04 is the ship time.
    assert event.occurred_at == datetime(2026, 11, 20, 14, 0, tzinfo=CHICAGO_WINTER)


def test_856_with_two_shipment_levels_keeps_them_apart():
    body = SHIPMENT_HEADER + ["HL*1**S", "REF*BM*BOL-A", "HL*2**S", "REF*BM*BOL-B"]
    parsed = parse_text(envelope(transaction("856", body)))

    assert [refs(event) for event in parsed.events] == [
        [("shipment", "SHP-9-1"), ("asn", "SHP-9"), ("bol", "BOL-A")],
        [("shipment", "SHP-9-2"), ("asn", "SHP-9"), ("bol", "BOL-B")],
    ]


def test_856_without_shipment_identification_is_numbered_by_its_bill_of_lading():
    """BSN02 empty: the shipment is known by its BOL, packing list (an ASN-like document number)
    and carrier reference."""
    parsed = parse_text(document("856_bol_only.edi"))

    assert parsed.warnings == []
    [event] = parsed.events
    assert event.kind == EventKind.SHIPMENT_MANIFESTED
    assert refs(event) == [
        ("shipment", "BOL-5521907"),
        ("bol", "BOL-5521907"),
        ("asn", "PL-300981"),
        ("pro", "PRO-880214"),
        ("po", "PO-88120"),
    ]
    assert lines(event) == [("TENT-2P", "40", "EA", "PO-88120"), ("STOVE-MINI", "24", "EA", "PO-88120")]
    assert event.attributes == {"carrier": "RDWY"}
    assert event.occurred_at == datetime(2026, 12, 5, 9, 30, tzinfo=CHICAGO_WINTER)


@pytest.mark.parametrize(
    ("body", "number"),
    [
        (["HL*1**S", "REF*PK*PL-1", "REF*CN*PRO-1"], "PRO-1"),
        (["HL*1**S", "REF*PK*PL-1"], "PL-1"),
        (["REF*BM*BOL-HEAD", "HL*1**S", "REF*PK*PL-1"], "PL-1"),  # the shipment's own first
        (["REF*BM*BOL-HEAD", "HL*1**S"], "BOL-HEAD"),
        (["REF*BM*", "HL*1**S", "REF*CN*PRO-1"], "PRO-1"),  # an empty REF02 names nothing
    ],
    ids=["carrier-reference", "packing-list", "shipment-level-first", "before-the-first-HL", "empty-REF02"],
)
def test_856_without_shipment_identification_takes_the_next_best_number(body, number):
    parsed = parse_text(envelope(transaction("856", ["BSN*00**20261120*1400", *body])))

    assert refs(parsed.events[0])[0] == ("shipment", number)


def test_856_without_shipment_identification_and_several_shipments():
    body = ["BSN*00**20261120*1400", "REF*PK*PL-9", "HL*1**S", "REF*BM*BOL-A", "HL*2**S", "HL*3**S"]
    parsed = parse_text(envelope(transaction("856", body)))

    assert [refs(event) for event in parsed.events] == [
        [("shipment", "BOL-A"), ("asn", "PL-9"), ("bol", "BOL-A")],
        [("shipment", "PL-9-2"), ("asn", "PL-9")],
        [("shipment", "PL-9-3"), ("asn", "PL-9")],
    ]


def test_856_without_any_shipment_number_is_rejected():
    parsed = parse_text(envelope(transaction("856", ["BSN*00**20261120*1400", "HL*1**S", "REF*2I*1Z999AA1"])))

    assert parsed.events == []
    assert parsed.warnings == [
        "X12 856 set 0001: rejected: segment 4 (BSN) element BSN02: expected the shipment identification, or a "
        "bill of lading, carrier reference or packing list (REF*BM/CN/PK) for the shipment, found nothing"
    ]
    assert parsed.acknowledgments[0].status == "rejected"


def test_856_references_are_kept_once_whatever_their_spacing():
    body = SHIPMENT_HEADER + ["HL*1**S", "REF*2I*1z 999 aa1", "HL*2*1*P", "MAN*CP*1Z999AA1", "MAN*GM*0001"]
    parsed = parse_text(envelope(transaction("856", body)))

    assert refs(parsed.events[0]) == [("shipment", "SHP-9"), ("tracking", "1Z999AA1"), ("container", "0001")]


def test_856_cancellation_is_reported_not_applied():
    parsed = parse_text(envelope(transaction("856", ["BSN*01*SHP-9*20261120*1400", "HL*1**S"])))

    assert parsed.events == []
    assert parsed.unsupported == ["X12 856 cancellation (BSN01 '01') of 'SHP-9' is not supported"]


def test_856_item_without_quantity_is_left_out_with_a_warning():
    body = SHIPMENT_HEADER + ["HL*1**S", "HL*2*1*I", "LIN**SK*A-1", "SN1**lots*EA", "HL*3*1*I", "LIN**SK*A-2"]
    parsed = parse_text(envelope(transaction("856", body)))

    assert parsed.events[0].lines == []
    assert parsed.warnings == [
        "X12 856 set 0001: segment 8 (SN1) element SN102: expected a number, found 'lots'; ignored",
        "X12 856 set 0001: segment 8 (SN1) element SN102: no readable quantity for 'A-1'; line ignored",
        "X12 856 set 0001: segment 10 (LIN): item has no SN1 (quantity shipped); line ignored",
    ]


# 214 ---------------------------------------------------------------------------------------------


def status_document(at7: str, ms1: str = "MS1*MEMPHIS*TN*US", version: str = "004010") -> str:
    lines_ = ["B10*PRO-1*SHP-1*SAIA", "L11*BOL-1*BM", "LX*1", at7, ms1]
    return envelope(transaction("214", lines_), functional_id="QM", version=version)


def test_214_document_with_several_statuses():
    parsed = parse_text(document("214_pipe_lines.edi"))

    assert parsed.warnings == []
    assert [event.kind.value for event in parsed.events] == [
        "shipment.picked_up",
        "shipment.in_transit",
        "shipment.eta_updated",
        "shipment.status_unmapped",
    ]
    picked_up, in_transit, eta, unmapped = parsed.events
    assert refs(picked_up) == [
        ("pro", "PRO-445566"),
        ("shipment", "SHP-5001"),
        ("bol", "BOL-778812"),
        ("po", "PO-77001"),
    ]
    assert picked_up.attributes == {"carrier": "SAIA", "status_code": "AF", "reason": "NS", "time_zone_assumed": True}
    assert (picked_up.location.city, picked_up.location.state) == ("ATLANTA", "GA")
    assert in_transit.occurred_at == datetime(2026, 11, 21, 8, 10, tzinfo=UTC)  # 03:10 ET in winter
    assert (in_transit.location.latitude, in_transit.location.longitude) == (
        Decimal("39.336389"),
        Decimal("-84.836667"),
    )
    assert eta.estimated_delivery_at == datetime(2026, 11, 24, 21, 0, tzinfo=UTC)  # 15:00 CT
    assert eta.occurred_at == datetime(2026, 11, 21, 8, 15, tzinfo=CHICAGO_WINTER)  # the document's GS04/GS05
    assert unmapped.attributes["status_code"] == "ZZ"
    assert parsed.unmapped_codes == ["ZZ"]
    # Each status carries the set's header and its own loop as raw text.
    assert unmapped.raw.startswith("ST|214|0001\nB10|PRO-445566|SHP-5001|SAIA\nL11|")
    assert unmapped.raw.endswith("N1|CN|BIG RETAIL STORE 42\nLX|4\nAT7|ZZ|NS|||20261121|0800|UT\nMS1|MEMPHIS|TN|US")


@pytest.mark.parametrize(("code", "kind"), sorted(DEFAULT_STATUS_CODES.items()))
def test_214_default_status_table(code, kind):
    at7 = (
        f"AT7***{code.split(':')[1]}**20261121*1015*ET"
        if code.startswith("AT703:")
        else f"AT7*{code}*NS***20261121*1015*ET"
    )
    parsed = parse_text(status_document(at7))

    assert [event.kind for event in parsed.events] == [kind]
    assert parsed.events[0].attributes["status_code"] == code
    assert parsed.unmapped_codes == []


def test_214_channel_overrides_the_status_table():
    context = ParseContext(
        time_zone="America/Chicago",
        mapping={"status_codes": {"x1": "shipment.delivered", "ZZ": "shipment.delayed", "QQ": "order.created"}},
    )
    delivered = parse_text(status_document("AT7*X1*NS***20261121*1015*ET"), context)
    delayed = parse_text(status_document("AT7*ZZ*NS***20261121*1015*ET"), context)

    assert delivered.events[0].kind == EventKind.SHIPMENT_DELIVERED
    assert delayed.events[0].kind == EventKind.SHIPMENT_DELAYED
    assert delayed.unmapped_codes == []
    assert delayed.warnings == [
        "X12 214 set 0001: mapping status_codes: 'QQ' -> 'order.created' is not a shipment event kind; ignored"
    ]


def test_214_unknown_code_is_kept_visible():
    parsed = parse_text(status_document("AT7*XB*A1***20261121*1015*ET"))

    [event] = parsed.events
    assert event.kind == EventKind.SHIPMENT_STATUS_UNMAPPED
    assert event.attributes == {"carrier": "SAIA", "status_code": "XB", "reason": "A1"}
    assert parsed.unmapped_codes == ["XB"]
    assert parsed.warnings == []


def test_214_appointment_only():
    delivery = parse_text(status_document("AT7***AB*AA*20261124*0900*ET"))
    pickup = parse_text(status_document("AT7***AA**20261119*0900*ET"))

    assert delivery.events[0].kind == EventKind.SHIPMENT_ETA_UPDATED
    assert delivery.events[0].estimated_delivery_at == datetime(2026, 11, 24, 14, 0, tzinfo=UTC)
    assert pickup.events[0].kind == EventKind.SHIPMENT_STATUS_UNMAPPED
    assert pickup.unmapped_codes == ["AT703:AA"]


@pytest.mark.parametrize(
    ("date", "code", "expected_utc", "assumed"),
    [
        ("20260715", "ET", datetime(2026, 7, 15, 14, 15, tzinfo=UTC), False),  # EDT, UTC-4
        ("20261215", "ET", datetime(2026, 12, 15, 15, 15, tzinfo=UTC), False),  # EST, UTC-5
        ("20260715", "PT", datetime(2026, 7, 15, 17, 15, tzinfo=UTC), False),
        ("20260715", "UT", datetime(2026, 7, 15, 10, 15, tzinfo=UTC), False),
        ("20260715", "GM", datetime(2026, 7, 15, 10, 15, tzinfo=UTC), False),
        ("20260715", "EST", datetime(2026, 7, 15, 15, 15, tzinfo=UTC), False),  # standard time, even in July
        ("20260715", "CD", datetime(2026, 7, 15, 15, 15, tzinfo=UTC), False),
        ("20260715", "LT", datetime(2026, 7, 15, 15, 15, tzinfo=UTC), True),  # partner zone: Chicago, CDT
        ("20260715", "", datetime(2026, 7, 15, 15, 15, tzinfo=UTC), False),
    ],
)
def test_214_time_zones(date, code, expected_utc, assumed):
    parsed = parse_text(status_document(f"AT7*D1*NS***{date}*1015*{code}"))

    [event] = parsed.events
    assert event.occurred_at == expected_utc
    assert event.attributes.get("time_zone_assumed", False) is assumed
    assert parsed.warnings == []


def test_214_unknown_time_code_uses_the_partner_zone_and_says_so():
    parsed = parse_text(status_document("AT7*D1*NS***20261121*1015*QQ"))

    assert parsed.events[0].occurred_at == datetime(2026, 11, 21, 16, 15, tzinfo=UTC)
    assert parsed.events[0].attributes["time_zone_assumed"] is True
    assert parsed.warnings == [
        "X12 214 set 0001: segment 7 (AT7) element AT707: unknown time zone code 'QQ'; read in America/Chicago"
    ]


def test_214_decimal_coordinates():
    parsed = parse_text(status_document("AT7*X6*NS***20261121*1015*ET", "MS1****-87.6298*41.8781"))

    location = parsed.events[0].location
    assert (location.longitude, location.latitude, location.city) == (Decimal("-87.6298"), Decimal("41.8781"), None)


def test_214_pre_004010_layout_has_a_century_element():
    parsed = parse_text(status_document("AT7*D1*NS***261121*20*1015*ET", version="003070"))

    assert parsed.warnings == []
    assert parsed.events[0].occurred_at == datetime(2026, 11, 21, 15, 15, tzinfo=UTC)


def test_214_without_any_reference_is_rejected():
    body = transaction("214", ["B10***SAIA", "LX*1", "AT7*D1*NS***20261121*1015*ET"])
    parsed = parse_text(envelope(body, functional_id="QM"))

    assert parsed.events == []
    assert parsed.warnings == [
        "X12 214 set 0001: rejected: segment 4 (B10): expected a PRO (B1001), a shipment id (B1002) or an L11 reference"
    ]


# 810, 210, 850, 940, 945 -------------------------------------------------------------------------


def test_810_invoice():
    [event] = parse_text(document("810_invoice.edi")).events

    assert event.kind == EventKind.INVOICE_GENERATED
    assert refs(event) == [("invoice", "INV-9001"), ("po", "PO-77001"), ("order", "SO-1001")]
    assert (event.amount, event.currency) == (Decimal("230.00"), "USD")
    assert [(line.sku, line.quantity, line.unit_price, line.line_number) for line in event.lines] == [
        ("SKU-RED-M", Decimal("12"), Decimal("12.50"), "1"),
        ("VP-BLUE-L", Decimal("4"), Decimal("20"), "2"),
    ]
    assert event.occurred_at == datetime(2026, 11, 25, tzinfo=CHICAGO_WINTER)


def test_210_freight_invoice():
    [event] = parse_text(document("210_freight.edi")).events

    assert event.kind == EventKind.FREIGHT_CHARGE_POSTED
    assert refs(event) == [("invoice", "FB-88001"), ("pro", "PRO-445566"), ("bol", "BOL-778812"), ("po", "PO-77001")]
    assert (event.amount, event.currency) == (Decimal("185.50"), "USD")
    assert event.attributes == {
        "carrier": "SAIA",
        "charge_number": "FB-88001",
        "charges": [{"code": None, "amount": "165.00"}, {"code": "FUE", "amount": "20.50"}],
    }
    assert event.occurred_at == datetime(2026, 11, 26, tzinfo=CHICAGO_WINTER)


def test_850_940_945_order_to_shipment():
    context = ParseContext(partner="BIGRETAIL", time_zone="America/Chicago")
    created, released, shipped = parse_text(document("850_940_945_multi_version.edi"), context).events

    assert refs(created) == [("po", "PO-77001"), ("order", "SO-1001")]
    assert created.order.customer == "BIGRETAIL"
    assert created.order.promised_at == datetime(2026, 11, 25, 17, 0, tzinfo=CHICAGO_WINTER)
    assert (created.amount, created.currency) == (Decimal("230"), "USD")
    assert [(line.sku, line.quantity, line.unit_price) for line in created.lines] == [
        ("SKU-RED-M", Decimal("12"), Decimal("12.50")),
        ("VP-BLUE-L", Decimal("4"), Decimal("20")),
    ]

    assert released.kind == EventKind.ORDER_RELEASED
    assert refs(released) == [("order", "SO-1001"), ("po", "PO-77001")]
    assert lines(released) == [("SKU-RED-M", "12", "EA", None), ("VP-BLUE-L", "4", "EA", None)]
    assert released.attributes == {"carrier": "ABFS"}
    assert released.occurred_at == datetime(2026, 11, 16, 8, 0, tzinfo=CHICAGO_WINTER)

    assert shipped.kind == EventKind.SHIPMENT_MANIFESTED
    assert refs(shipped) == [("shipment", "SHP-5001"), ("order", "SO-1001"), ("po", "PO-77001"), ("bol", "BOL-778812")]
    assert lines(shipped) == [("SKU-RED-M", "12", "EA", "SO-1001"), ("VP-BLUE-L", "3", "EA", "SO-1001")]
    assert shipped.attributes == {"carrier": "ABFS"}
    assert shipped.event_id.startswith("x12:BIGRETAIL:945:")


def test_940_release_time_is_the_document_time_and_not_part_of_its_id():
    text = document("850_940_945_multi_version.edi")
    later = text.replace("*20261116*0800*506*", "*20261117*0930*506*")

    first, again = parse_text(text).events[1], parse_text(later).events[1]

    assert first.occurred_at != again.occurred_at
    assert first.event_id == again.event_id

"""EDIFACT parser: layouts, envelope warnings, the four message mappings, errors and fuzzing."""

import textwrap
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apps.ingest.parsers import edifact
from apps.ingest.parsers.base import ParseContext, ParsedDocument, ParseError
from apps.timeline.events import EventKind

DOCUMENTS = Path(__file__).parent / "documents" / "edifact"
BERLIN = ZoneInfo("Europe/Berlin")
CONTEXT = ParseContext(time_zone="Europe/Berlin")


def load(name: str) -> bytes:
    return (DOCUMENTS / name).read_bytes()


def parse(body: bytes | str, context: ParseContext = CONTEXT) -> ParsedDocument:
    return edifact.parse(body.encode() if isinstance(body, str) else body, context)


def refs(event) -> set[tuple[str, str]]:
    return {(ref.kind.value, ref.value) for ref in event.references}


def summary(document: ParsedDocument) -> list[tuple]:
    return [(e.event_id, e.kind, e.occurred_at, sorted(refs(e)), e.lines, e.attributes) for e in document.events]


def interchange(*messages: str, unz: str | None = None, control: str = "REF1") -> str:
    """An interchange around message bodies written without their UNH/UNT (counts computed)."""
    parts = [f"UNB+UNOA:3+SENDER:ZZ+RECEIVER:ZZ+261120:1000+{control}'"]
    for number, message in enumerate(messages, start=1):
        segments = [line for line in message.split("'") if line.strip()]
        parts.append(f"UNH+{number}+{segments[0]}'")
        parts += [f"{segment.strip()}'" for segment in segments[1:]]
        parts.append(f"UNT+{len(segments) + 1}+{number}'")
    parts.append(unz if unz is not None else f"UNZ+{len(messages)}+{control}'")
    return "\n".join(parts)


STATUS = "IFTSTA:D:01B:UN'BGM+23+S1+9'CNI+1+CONS1'STS+1+21'DTM+334:202611201200:203'"


# ---------------------------------------------------------------------------------------------
# Detection and sender ids


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"UNA:+.? 'UNB+UNOC:3+X+Y+261120:1000+1'", True),
        (b"UNB+UNOC:3+X+Y+261120:1000+1'", True),
        (b"\xef\xbb\xbf\r\n  UNB+UNOA:1+X", True),
        (b"ISA*00*          *00*", False),
        (b'{"events": []}', False),
        (b"", False),
    ],
)
def test_looks_like(body, expected):
    assert edifact.looks_like(body) is expected


def test_sender_ids_from_unb_with_and_without_qualifier():
    assert edifact.sender_ids(load("iftsta_d01b.edi")) == [("14", "5412345000013")]
    assert edifact.sender_ids(b"UNB+UNOA:1+PLAINID+Y+261120:1000+1'") == [("UNB", "PLAINID")]
    assert edifact.sender_ids(load("iftsta_custom_delimiters.edi")) == [("ZZ", "CARRIERX")]


def test_sender_ids_of_a_truncated_document():
    assert edifact.sender_ids(load("orders_d96a.edi")[:200]) == [("14", "5412345000013")]


@pytest.mark.parametrize("body", [b"", b"UNA:+", b"garbage", b"UNB+", b"\xff\xfe\x00", b"UNA:::::'UNB+X'"])
def test_sender_ids_never_raises(body):
    assert edifact.sender_ids(body) == []


# ---------------------------------------------------------------------------------------------
# IFTSTA


def test_iftsta_statuses_kinds_references_and_times():
    document = parse(load("iftsta_d01b.edi"))

    assert document.warnings == []
    assert [event.kind for event in document.events] == [
        EventKind.SHIPMENT_PICKED_UP,
        EventKind.SHIPMENT_IN_TRANSIT,
        EventKind.SHIPMENT_DELAYED,
        EventKind.SHIPMENT_DELIVERED,
        EventKind.SHIPMENT_STATUS_UNMAPPED,
    ]
    picked, in_transit, delayed, delivered, unmapped = document.events
    assert refs(picked) == {
        ("shipment", "NF123456789"),
        ("bol", "BOL-5521"),
        ("pro", "PRO881234"),
        ("po", "PO-77"),
    }
    # 203 and 204 carry no zone: the partner's zone applies; 205 and 303 carry their own.
    assert picked.occurred_at == datetime(2026, 11, 19, 8, 15, tzinfo=BERLIN)
    assert in_transit.occurred_at == datetime(2026, 11, 19, 18, 0, 0, tzinfo=BERLIN)
    assert delayed.occurred_at == datetime(2026, 11, 20, 6, 30, tzinfo=timezone(timedelta(hours=1)))
    assert delivered.occurred_at == datetime(2026, 11, 20, 13, 42, tzinfo=UTC)
    assert delayed.attributes["reason"] == "8"
    assert delayed.attributes["reason_text"] == "Changed schedule: ferry cancelled"
    assert delayed.estimated_delivery_at == datetime(2026, 11, 22, 23, 59, 59, tzinfo=BERLIN)
    assert picked.location.name == "Hamburg Hub"
    assert picked.location.country == "DE"
    assert delivered.location.name == "Lyon Saint-Exupery"
    assert picked.attributes["carrier"] == "NORDFRACHT"
    assert refs(unmapped) == {("shipment", "NF987654321"), ("tracking", "00340434161094042557"), ("po", "PO-77")}
    assert unmapped.attributes["status_code"] == "999"
    assert unmapped.attributes["status_text"] == "Parcel scanned at locker"
    assert document.unmapped_codes == ["999"]


def test_events_carry_raw_message_text_and_no_source():
    document = parse(load("iftsta_d01b.edi"))
    event = document.events[0]
    assert event.raw.startswith("UNH+1+IFTSTA:D:01B:UN'")
    assert event.raw.rstrip().endswith("UNT+25+1'")
    assert "UNB" not in event.raw
    assert event.source.partner is None
    assert event.source.channel is None
    assert event.source.message is None


def test_event_ids_are_stable_across_resends_with_new_control_references():
    original = load("iftsta_d01b.edi").decode()
    resent = (
        original.replace("IF0042", "IF0777")
        .replace("UNH+1+", "UNH+9+")
        .replace("UNT+25+1'", "UNT+25+9'")
        .replace("261120:1405", "261121:0900")
    )
    first, second = parse(original), parse(resent)
    assert second.warnings == []
    assert [e.event_id for e in first.events] == [e.event_id for e in second.events]
    assert len({e.event_id for e in first.events}) == len(first.events)


def test_event_ids_differ_per_sender():
    original = load("iftsta_d01b.edi").decode()
    other = original.replace("5412345000013:14", "5499999000013:14")
    assert {e.event_id for e in parse(original).events}.isdisjoint(e.event_id for e in parse(other).events)


def test_status_code_overrides_and_unmapped_codes():
    context = ParseContext(
        time_zone="Europe/Berlin",
        mapping={"status_codes": {"999": "shipment.out_for_delivery", "21": "shipment.pod_received"}},
    )
    document = parse(load("iftsta_d01b.edi"), context)
    kinds = [event.kind for event in document.events]
    assert kinds[3] == EventKind.SHIPMENT_POD_RECEIVED
    assert kinds[4] == EventKind.SHIPMENT_OUT_FOR_DELIVERY
    assert document.unmapped_codes == []


def test_status_override_with_an_unknown_kind_is_a_parse_error():
    context = ParseContext(mapping={"status_codes": {"21": "shipment.teleported"}})
    with pytest.raises(ParseError, match=r"status_codes\['21'\] = 'shipment.teleported' is not a known EventKind"):
        parse(load("iftsta_d01b.edi"), context)


def test_reference_qualifier_override():
    context = ParseContext(time_zone="UTC", mapping={"reference_qualifiers": {"cn": "tracking", "ON": "order"}})
    event = parse(load("iftsta_d01b.edi"), context).events[0]
    assert ("tracking", "PRO881234") in refs(event)
    assert ("order", "PO-77") in refs(event)


def test_naive_times_follow_the_partner_time_zone():
    new_york = parse(load("iftsta_d01b.edi"), ParseContext(time_zone="America/New_York")).events
    assert new_york[0].occurred_at == datetime(2026, 11, 19, 8, 15, tzinfo=ZoneInfo("America/New_York"))
    assert new_york[3].occurred_at == datetime(2026, 11, 20, 13, 42, tzinfo=UTC)


def test_unknown_partner_time_zone_is_a_parse_error():
    with pytest.raises(ParseError, match="time zone 'Mars/Olympus' of the channel is not a known IANA zone"):
        parse(load("iftsta_d01b.edi"), ParseContext(time_zone="Mars/Olympus"))


def test_iftsta_with_every_delimiter_redefined_and_release_characters():
    document = parse(load("iftsta_custom_delimiters.edi"))
    assert document.warnings == []
    assert [event.kind for event in document.events] == [
        EventKind.SHIPMENT_IN_TRANSIT,
        EventKind.SHIPMENT_OUT_FOR_DELIVERY,
    ]
    assert refs(document.events[0]) == {("shipment", "CONS*7"), ("bol", "BL|9")}
    assert document.events[0].occurred_at == datetime(2026, 11, 20, 9, 15, tzinfo=BERLIN)


def test_release_characters_in_default_delimiters():
    body = interchange(
        "IFTSTA:D:01B:UN'BGM+23+S1+9'CNI+1+A?+B?'C??D?:E'STS+1+31'DTM+334:202611201200:203'",
    )
    document = parse(body)
    assert refs(document.events[0]) == {("shipment", "A+B'C?D:E")}


def test_cni_number_takes_a_qualifier_written_after_it():
    body = interchange("IFTSTA:D:01B:UN'CNI+1+BL-1:BM'STS+1+21'DTM+334:202611201200:203'")
    assert refs(parse(body).events[0]) == {("bol", "BL-1")}


def test_status_without_own_date_takes_the_document_date_then_the_unb_time():
    with_document_date = interchange("IFTSTA:D:01B:UN'DTM+137:202611191000:203'CNI+1+C1'STS+1+21'")
    assert parse(with_document_date).events[0].occurred_at == datetime(2026, 11, 19, 10, 0, tzinfo=BERLIN)
    bare = interchange("IFTSTA:D:01B:UN'CNI+1+C1'STS+1+21'")
    assert parse(bare).events[0].occurred_at == datetime(2026, 11, 20, 10, 0, tzinfo=BERLIN)


def test_malformed_status_date_is_a_warning_and_falls_back():
    body = interchange("IFTSTA:D:01B:UN'DTM+137:20261119:102'CNI+1+C1'STS+1+21'DTM+334:CCYYMMDD:102'")
    document = parse(body)
    assert document.events[0].occurred_at == datetime(2026, 11, 19, tzinfo=BERLIN)
    assert document.warnings == ["IFTSTA 1: segment 6 ('DTM+334:CCYYMMDD:102') ignored: 'CCYYMMDD' is not a 102 date"]


def test_status_without_references_is_skipped_with_a_warning():
    body = interchange("IFTSTA:D:01B:UN'STS+1+21'DTM+334:202611201200:203'")
    document = parse(body)
    assert document.events == []
    assert document.warnings == ["IFTSTA 1: no reference to correlate a shipment.delivered event, skipped"]


# ---------------------------------------------------------------------------------------------
# Layouts: the same interchange written differently gives the same events


def _one_line(text: str) -> str:
    return text.replace("\n", "")


def _crlf(text: str) -> str:
    return text.replace("\n", "\r\n")


def _hard_wrapped(text: str) -> str:
    return "\n".join(textwrap.wrap(_one_line(text), 80, drop_whitespace=False, break_on_hyphens=False))


def _indented(text: str) -> str:
    return "".join(f"\t  {line}  \n" for line in text.splitlines()) + "\n\n"


def _without_una(text: str) -> str:
    return text.split("\n", 1)[1]


@pytest.mark.parametrize("layout", [_one_line, _crlf, _hard_wrapped, _indented, _without_una])
def test_layouts_give_the_same_events(layout):
    original = load("iftsta_d01b.edi").decode()
    expected = summary(parse(original))
    document = parse(layout(original))
    assert document.warnings == []
    assert summary(document) == expected


def test_syntax_level_b_information_separators_without_una():
    text = load("desadv_ung_one_line.edi").decode()
    level_b = text.translate(str.maketrans({":": "\x1f", "+": "\x1d", "'": "\x1c"}))
    assert summary(parse(level_b)) == summary(parse(text))


def test_final_unz_without_terminator_is_a_warning():
    text = load("orders_d96a.edi").decode().rstrip().removesuffix("'")
    document = parse(text)
    assert len(document.events) == 1
    assert document.warnings == ["segment 23 ('UNZ+1+ORD1500') has no segment terminator"]


# ---------------------------------------------------------------------------------------------
# DESADV


def test_desadv_in_a_group_without_una_on_one_line():
    document = parse(load("desadv_ung_one_line.edi"))
    assert document.warnings == []
    (event,) = document.events
    assert event.kind == EventKind.SHIPMENT_MANIFESTED
    assert refs(event) == {
        ("shipment", "ASN-40017"),
        ("asn", "ASN-40017"),
        ("po", "PO-77"),
        ("po", "PO-78"),
        ("bol", "BOL-5521"),
        ("pro", "PRO-881234"),
        ("container", "003541234500000017"),
        ("container", "003541234500000024"),
    }
    assert event.occurred_at == datetime(2026, 11, 18, 16, 30, tzinfo=BERLIN)
    assert event.estimated_delivery_at == datetime(2026, 11, 21, 23, 59, 59, tzinfo=BERLIN)
    assert [(line.sku, line.quantity, line.uom, line.order) for line in event.lines] == [
        ("SKU-1", Decimal("40"), "PCE", "PO-77"),
        ("SKU-2", Decimal("7.5"), "KGM", "PO-78"),
    ]
    assert event.attributes["carrier"] == "DHLF"
    assert event.attributes["packaging"][0] == {"level": "1", "count": "2", "type": "PX"}


def test_desadv_shipment_reference_wins_over_the_document_number():
    body = interchange("DESADV:D:96A:UN'BGM+351+ASN-1+9'DTM+11:20261118:102'RFF+SRN:SHP-9'")
    assert refs(parse(body).events[0]) == {("asn", "ASN-1"), ("shipment", "SHP-9")}


def test_desadv_line_without_quantity_is_a_warning():
    body = interchange("DESADV:D:96A:UN'BGM+351+ASN-1+9'DTM+11:20261118:102'LIN+1++SKU-A:SA'QTY+21:5'")
    document = parse(body)
    assert document.events[0].lines == []
    assert document.warnings == ["DESADV 1: line 1 (segment 5 ('LIN+1++SKU-A:SA')) has no QTY+12 quantity, skipped"]


def test_cancelled_desadv_is_unsupported():
    body = interchange("DESADV:D:96A:UN'BGM+351+ASN-1+1'DTM+11:20261118:102'")
    document = parse(body)
    assert document.events == []
    assert document.unsupported == ["EDIFACT DESADV cancellation (BGM message function 1) is not supported"]


# ---------------------------------------------------------------------------------------------
# INVOIC


def test_invoic_latin1_crlf_with_comma_decimals():
    document = parse(load("invoic_unoc_latin1.edi"))
    assert document.warnings == []
    (event,) = document.events
    assert event.kind == EventKind.INVOICE_GENERATED
    assert refs(event) == {("invoice", "INV-2026-0091"), ("po", "PO-77"), ("asn", "ASN-40017")}
    assert event.amount == Decimal("630.70")
    assert event.currency == "EUR"
    assert event.occurred_at == datetime(2026, 11, 21, tzinfo=BERLIN)
    assert [(line.sku, line.quantity, line.uom, line.unit_price) for line in event.lines] == [
        ("SKU-1", Decimal("40"), "PCE", Decimal("12.50")),
        ("SKU-2", Decimal("7.5"), "KGM", Decimal("4")),
    ]
    assert "Müller Straßenbau AG" in event.raw


def test_invoic_total_preference_and_currency_from_moa():
    body = interchange("INVOIC:D:96A:UN'BGM+380+INV-2+9'DTM+137:20261121:102'MOA+39:99.00'MOA+86:120.00:USD'")
    event = parse(body).events[0]
    assert event.amount == Decimal("120.00")
    assert event.currency == "USD"


def test_credit_note_is_unsupported():
    body = interchange("INVOIC:D:96A:UN'BGM+381+CN-1+9'DTM+137:20261121:102'")
    document = parse(body)
    assert document.events == []
    assert document.unsupported == ["EDIFACT INVOIC document 381 is not supported (only invoices 380, 384 and 388)"]


# ---------------------------------------------------------------------------------------------
# ORDERS


def test_orders_creates_the_order_with_promised_date_buyer_and_lines():
    document = parse(load("orders_d96a.edi"))
    assert document.warnings == []
    (event,) = document.events
    assert event.kind == EventKind.ORDER_CREATED
    assert refs(event) == {("po", "PO-77"), ("order", "PO-77")}
    assert event.occurred_at == datetime(2026, 11, 15, tzinfo=BERLIN)
    assert event.order.promised_at == datetime(2026, 11, 25, 23, 59, 59, tzinfo=BERLIN)
    assert event.attributes["buyer"] == {
        "id": "5412345000013",
        "agency": "9",
        "name": "ACME Retail NV",
        "city": "Gent",
        "postal_code": "9000",
        "country": "BE",
    }
    assert [(line.sku, line.quantity, line.unit_price) for line in event.lines] == [
        ("SKU-1", Decimal("40"), Decimal("12.50")),
        ("SKU-2", Decimal("10"), Decimal("4.00")),
    ]


def test_orders_cancellation():
    body = interchange("ORDERS:D:96A:UN'BGM+220+PO-77+1'DTM+137:20261116:102'")
    (event,) = parse(body).events
    assert event.kind == EventKind.ORDER_CANCELLED
    assert refs(event) == {("po", "PO-77"), ("order", "PO-77")}


# ---------------------------------------------------------------------------------------------
# Several messages, unsupported types, envelope warnings


def test_several_messages_and_an_unsupported_type():
    body = interchange(
        STATUS,
        "APERAK:D:96A:UN'BGM+305+A1+9'",
        "ORDERS:D:96A:UN'BGM+220+PO-1+9'DTM+137:20261116:102'",
        "APERAK:D:96A:UN'BGM+305+A2+9'",
    )
    document = parse(body)
    assert [event.kind for event in document.events] == [EventKind.SHIPMENT_DELIVERED, EventKind.ORDER_CREATED]
    assert document.unsupported == ["EDIFACT APERAK is not supported"]
    assert document.warnings == []


def test_two_interchanges_back_to_back():
    first = interchange(STATUS, control="A")
    second = interchange("ORDERS:D:96A:UN'BGM+220+PO-1+9'DTM+137:20261116:102'", control="B")
    document = parse(first + "\n" + second)
    assert len(document.events) == 2
    assert document.warnings == []


def test_ung_groups_count_in_unz():
    body = (
        "UNB+UNOC:3+S:ZZ+R:ZZ+261120:1000+X1'"
        "UNG+IFTSTA+S:ZZ+R:ZZ+261120:1000+G1+UN+D:01B'"
        "UNH+1+IFTSTA:D:01B:UN'CNI+1+C1'STS+1+21'DTM+334:202611201200:203'UNT+5+1'"
        "UNH+2+IFTSTA:D:01B:UN'CNI+1+C2'STS+1+21'DTM+334:202611201200:203'UNT+5+2'"
        "UNE+2+G1'"
        "UNZ+1+X1'"
    )
    document = parse(body)
    assert len(document.events) == 2
    assert document.warnings == []


@pytest.mark.parametrize(
    ("body", "warning"),
    [
        (
            "UNB+UNOA:3+S+R+261120:1000+X1'UNH+7+IFTSTA:D:01B:UN'CNI+1+C1'STS+1+21'UNT+9+7'UNZ+1+X1'",
            "message 7: UNT says 9 segments, counted 4",
        ),
        (
            "UNB+UNOA:3+S+R+261120:1000+X1'UNH+7+IFTSTA:D:01B:UN'CNI+1+C1'STS+1+21'UNT+4+8'UNZ+1+X1'",
            "message 7: UNT reference '8' does not match UNH reference '7'",
        ),
        (
            "UNB+UNOA:3+S+R+261120:1000+X1'UNH+7+IFTSTA:D:01B:UN'CNI+1+C1'STS+1+21'UNT+4+7'UNZ+3+X1'",
            "interchange X1: UNZ says 3 messages, counted 1",
        ),
        (
            "UNB+UNOA:3+S+R+261120:1000+X1'UNH+7+IFTSTA:D:01B:UN'CNI+1+C1'STS+1+21'UNT+4+7'UNZ+1+X2'",
            "interchange X1: UNZ reference 'X2' does not match UNB reference 'X1'",
        ),
        (
            "UNB+UNOA:3+S+R+261120:1000+X1'UNH+7+IFTSTA:D:01B:UN'CNI+1+C1'STS+1+21'UNT+4+7'",
            "interchange X1: no UNZ trailer (truncated?)",
        ),
        (
            "UNB+UNOA:3+S+R+261120:1000+X1'UNG+IFTSTA+S+R+261120:1000+G1+UN+D:01B'"
            "UNH+7+IFTSTA:D:01B:UN'CNI+1+C1'STS+1+21'UNT+4+7'UNE+5+G1'UNZ+1+X1'",
            "group G1: UNE says 5 messages, counted 1",
        ),
        (
            "UNB+UNOA:3+S+R+261120:1000+X1'UNG+IFTSTA+S+R+261120:1000+G1+UN+D:01B'"
            "UNH+7+IFTSTA:D:01B:UN'CNI+1+C1'STS+1+21'UNT+4+7'UNE+1+G9'UNZ+1+X1'",
            "group G1: UNE reference 'G9' does not match UNG reference 'G1'",
        ),
        (
            "UNB+UNOA:3+S+R+261120:1000+X1'UNG+IFTSTA+S+R+261120:1000+G1+UN+D:01B'"
            "UNH+7+IFTSTA:D:01B:UN'CNI+1+C1'STS+1+21'UNT+4+7'UNZ+1+X1'",
            "group G1: no UNE trailer",
        ),
        (
            "UNB+UNOA:3+S+R+261120:1000+X1'UNH+7+IFTSTA:D:01B:UN'CNI+1+C1'STS+1+21'UNT+4+7'FTX+AAI+++stray'UNZ+1+X1'",
            "segment 6 ('FTX+AAI+++stray') is outside any message, ignored",
        ),
        (
            "UNB+UNOA:3+S+R+261120:1000+X1'UNZ+0+X1'",
            "the interchange holds no message",
        ),
    ],
)
def test_envelope_warnings_keep_the_content(body, warning):
    document = parse(body)
    assert document.warnings == [warning]
    assert len(document.events) == (0 if "no message" in warning else 1)


# ---------------------------------------------------------------------------------------------
# Unreadable documents


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "empty document: expected UNA or UNB"),
        (b"  \r\n", "empty document: expected UNA or UNB"),
        (b"UNA:+.", "UNA service string advice is truncated: expected 6 characters, found ':+.'"),
        (b"UNA::.? 'UNB", 'UNA service string advice "::.? \'" is unusable'),
        (
            b"UNA:+.? 'UNH+1+IFTSTA:D:01B:UN'",
            "segment 1 ('UNH+1+IFTSTA:D:01B:UN'): expected UNB opening an interchange, found UNH",
        ),
        (
            b"UNB+UNOA:3+S+R+261120:1000+X1'UNH+1+IFTSTA:D:01B:UN'CNI+1+C1'",
            "document ends inside message '1' (UNH at segment 2): expected UNT, found end of document (truncated?)",
        ),
        (
            b"UNB+UNOA:3+S+R+261120:1000+X1'UNH+1+IFTSTA:D:01B:UN'CNI+1+C1'STS+1+2",
            "segment 4 ('STS+1+2') has no segment terminator \"'\": the document ends inside it (truncated?)",
        ),
        (
            b"UNB+UNOA:3+S+R+261120:1000+X1'UNH+1+IFTSTA:D:01B:UN'CNI+1+C1'UNH+2+IFTSTA:D:01B:UN'UNT+2+2'UNZ+1+X1'",
            "segment 4 ('UNH+2+IFTSTA:D:01B:UN'): expected UNT closing message '1' (UNH at segment 2), found UNH",
        ),
        (
            b"UNB+UNOA:3+S+R+261120:1000+X1'UNT+2+1'",
            "segment 2 ('UNT+2+1'): found UNT without a UNH opening a message",
        ),
        (
            b"UNB+UNOA:3+S+R+261120:1000+X1'UNH+1+IFTSTA:D:01B:UN'cni+1+C1'UNT+3+1'UNZ+1+X1'",
            "segment 3: expected a three-character segment tag, found 'cni+1+C1'",
        ),
        (b"ISA*00*", "not an EDIFACT interchange: expected UNA or UNB, found 'ISA*00*'"),
        (b"UNB+UNOA:3+S+R+261120:1000+X1'UNZ+1+X1?", "segment 2 ('UNZ+1+X1?'): ends with the release character '?'"),
    ],
)
def test_unreadable_documents_raise_a_precise_parse_error(body, message):
    with pytest.raises(ParseError) as raised:
        edifact.parse(body, CONTEXT)
    assert str(raised.value).startswith(message)


# ---------------------------------------------------------------------------------------------
# Fuzzing: a ParsedDocument or a ParseError, nothing else


def _valid_documents() -> list[bytes]:
    return [path.read_bytes() for path in sorted(DOCUMENTS.glob("*.edi"))]


def _segments_of(body: bytes) -> list[bytes]:
    return [part + b"'" for part in body.split(b"'") if part]


@st.composite
def mutated_documents(draw) -> bytes:
    body = bytearray(draw(st.sampled_from(_valid_documents())))
    for _ in range(draw(st.integers(1, 4))):
        operation = draw(st.sampled_from(["flip", "delete", "truncate", "duplicate", "insert"]))
        if not body:
            break
        position = draw(st.integers(0, len(body) - 1))
        if operation == "flip":
            body[position] = draw(st.sampled_from(b"'+:?\n\x00\xffA9 "))
        elif operation == "delete":
            del body[position : position + draw(st.integers(1, 20))]
        elif operation == "truncate":
            del body[position:]
        elif operation == "duplicate":
            segments = _segments_of(bytes(body))
            index = draw(st.integers(0, max(len(segments) - 1, 0)))
            segments[index:index] = segments[index : index + 1]
            body = bytearray(b"".join(segments))
        else:
            body[position:position] = draw(st.binary(max_size=12))
    return bytes(body)


def _outcome(body: bytes) -> ParsedDocument | ParseError:
    try:
        return edifact.parse(body, CONTEXT)
    except ParseError as exc:
        return exc


def _parses_or_rejects(body: bytes) -> None:
    outcome = _outcome(body)
    assert isinstance(outcome, ParsedDocument) or str(outcome)
    assert isinstance(edifact.sender_ids(body), list)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_arbitrary_bytes_parse_or_raise_parse_error(body):
    _parses_or_rejects(body)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300).map(lambda tail: b"UNB+UNOC:3+S:ZZ+R:ZZ+261120:1000+X'" + tail))
def test_arbitrary_bytes_after_a_unb_parse_or_raise_parse_error(body):
    _parses_or_rejects(body)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_documents())
def test_mutated_documents_parse_or_raise_parse_error(body):
    _parses_or_rejects(body)

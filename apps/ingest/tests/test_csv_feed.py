"""CSV feeds: shipment status, inventory snapshot, order release (no database)."""

import tracemalloc
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from apps.ingest.parsers import csv_feed
from apps.ingest.parsers.base import ParseContext, ParsedDocument, ParseError
from apps.timeline.events import EventKind

K = EventKind
DOCUMENTS = Path(__file__).parent / "documents" / "csv"
SHIPMENT_COLUMNS = {"tracking": "Tracking No", "status": "Status", "occurred_at": "Event Time"}


def context(partner: str = "CARRIER", **csv: object) -> ParseContext:
    return ParseContext(
        partner=partner,
        time_zone="Europe/Paris",
        mapping={"csv": csv},
        received_at=datetime(2026, 11, 22, 6, tzinfo=UTC),
    )


def test_shipment_status_bom_semicolons_quotes_blank_lines_and_bad_rows():
    body = (DOCUMENTS / "shipment_status.csv").read_bytes()
    document = csv_feed.parse(body, context(columns=SHIPMENT_COLUMNS))
    assert [event.kind for event in document.events] == [
        K.SHIPMENT_DELIVERED,
        K.SHIPMENT_OUT_FOR_DELIVERY,
        K.SHIPMENT_STATUS_UNMAPPED,
    ]
    delivered, out, unmapped = document.events
    assert delivered.occurred_at.isoformat() == "2026-11-20T14:03:00+01:00"
    assert delivered.attributes["time_zone_assumed"] is True
    assert delivered.attributes["carrier"] == "UPS"
    assert [(ref.kind.value, ref.value) for ref in delivered.references] == [
        ("tracking", "1Z999AA10123456784"),
        ("order", "SO-1001"),
    ]
    assert delivered.location.city == "Lyon"
    assert out.location.city == "Lyon, 2e"
    assert "time_zone_assumed" not in out.attributes
    assert unmapped.occurred_at.isoformat() == "2026-11-19T10:00:00+01:00"  # trailing spaces
    assert document.unmapped_codes == ["ZZ"]
    assert document.warnings == [
        "line 5, column 'Event Time': '2026-13-01 10:00' is not a date; row skipped",
        "line 7, column 'Tracking No' is empty; row skipped",
    ]


def test_shipment_ids_are_stable_and_partner_scoped():
    body = (DOCUMENTS / "shipment_status.csv").read_bytes()
    first = csv_feed.parse(body, context(columns=SHIPMENT_COLUMNS))
    again = csv_feed.parse(body, context(columns=SHIPMENT_COLUMNS))
    other = csv_feed.parse(body, context("OTHER", columns=SHIPMENT_COLUMNS))
    assert [e.event_id for e in first.events] == [e.event_id for e in again.events]
    assert {e.event_id for e in first.events}.isdisjoint(e.event_id for e in other.events)


def test_default_columns_comma_delimiter_eta_and_status_override():
    body = (
        b"tracking_number,status,occurred_at,eta,scac\n"
        b"PRO-1,X6,2026-11-20T08:00:00Z,2026-11-20T17:00:00Z,ODFL\n"
        b"PRO-2,Zugestellt,2026-11-20T09:00:00Z,,ODFL\n"
    )
    document = csv_feed.parse(body, context(status_codes={"zugestellt": "delivered"}))
    assert [event.kind for event in document.events] == [
        K.SHIPMENT_OUT_FOR_DELIVERY,
        K.SHIPMENT_ETA_UPDATED,
        K.SHIPMENT_DELIVERED,
    ]
    assert document.events[1].estimated_delivery_at == datetime(2026, 11, 20, 17, tzinfo=UTC)
    assert document.events[0].attributes["carrier"] == "ODFL"


def test_time_format_from_the_channel():
    body = b"tracking;status;occurred_at\nT-1;delivered;20.11.2026 14:03\nT-2;delivered;2026-11-20\n"
    document = csv_feed.parse(body, context(time_format="%d.%m.%Y %H:%M"))
    assert document.events[0].occurred_at.isoformat() == "2026-11-20T14:03:00+01:00"
    assert document.warnings == ["line 3, column 'occurred_at': '2026-11-20' is not a date; row skipped"]


def test_inventory_snapshot_tab_delimited_one_event_per_warehouse():
    body = (DOCUMENTS / "inventory_snapshot.tsv").read_bytes()
    document = csv_feed.parse(body, context("WMS", feed="inventory_snapshot"))
    assert [event.kind for event in document.events] == [K.INVENTORY_SNAPSHOT, K.INVENTORY_SNAPSHOT]
    lyon, paris = document.events
    assert lyon.attributes["warehouse"] == "WH-LYON"
    assert [(line.sku, line.quantity, line.uom) for line in lyon.lines] == [
        ("SKU-1", Decimal("120"), "EA"),
        ("SKU-2", Decimal("7.5"), "KG"),
    ]
    assert paris.attributes["warehouse"] == "WH-PARIS"
    assert lyon.references == []
    assert document.warnings == ["line 4, column 'qty': 'lots' is not a number; row skipped"]


def test_inventory_snapshot_defaults_to_partner_warehouse_and_received_time():
    body = b"SKU,Quantity\nA,1\nB,2\n"
    document = csv_feed.parse(body, context("WH-LYON", feed="inventory_snapshot"))
    [event] = document.events
    assert event.attributes["warehouse"] == "WH-LYON"
    assert event.occurred_at == datetime(2026, 11, 22, 6, tzinfo=UTC)
    no_time = ParseContext(partner="WH-LYON", mapping={"csv": {"feed": "inventory_snapshot"}})
    with pytest.raises(ParseError, match="snapshot has no time"):
        csv_feed.parse(body, no_time)


def test_order_release_groups_lines_per_order():
    body = (DOCUMENTS / "order_release.csv").read_bytes()
    document = csv_feed.parse(
        body,
        context("ERP", feed="order_release", columns={"occurred_at": "Released"}, time_format="%d.%m.%Y %H:%M"),
    )
    assert [event.kind for event in document.events] == [K.ORDER_RELEASED, K.ORDER_RELEASED]
    first, second = document.events
    assert [(ref.kind.value, ref.value) for ref in first.references] == [("order", "SO-1001"), ("po", "PO-77")]
    assert [line.sku for line in first.lines] == ["SKU-1", "SKU-2"]
    assert first.attributes["warehouse"] == "WH-LYON"
    assert second.lines == []
    assert document.warnings == ["line 5, column 'Released': '31.11.2026 09:30' is not a date; row skipped"]


def test_header_problems_are_parse_errors():
    with pytest.raises(ParseError, match="no column for tracking"):
        csv_feed.parse(b"parcel,status,occurred_at\nX,delivered,2026-11-20\n", context())
    with pytest.raises(ParseError, match="column 'Tracking No' \\(for tracking\\) is not in the header"):
        csv_feed.parse(b"tracking,status,occurred_at\n", context(columns={"tracking": "Tracking No"}))
    with pytest.raises(ParseError, match="unknown CSV feed"):
        csv_feed.parse(b"a,b\n", context(feed="weather"))
    with pytest.raises(ParseError, match="no header line"):
        csv_feed.parse(b"\n\n", context())


def test_file_without_a_good_row_is_a_parse_error():
    body = b"tracking,status,occurred_at\nT-1,delivered,yesterday\n"
    with pytest.raises(ParseError, match="no row could be read: line 2, column 'occurred_at'"):
        csv_feed.parse(body, context())


def test_not_utf8_names_the_line():
    body = b"tracking,status,occurred_at\nT-1,d\xe9livr\xe9,2026-11-20\n"
    with pytest.raises(ParseError, match="line 2: not utf-8-sig text"):
        csv_feed.parse(body, context())
    document = csv_feed.parse(body, context(encoding="cp1252", status_codes={"délivré": "delivered"}))
    assert document.events[0].kind == K.SHIPMENT_DELIVERED


def test_looks_like():
    assert csv_feed.looks_like((DOCUMENTS / "shipment_status.csv").read_bytes())
    assert csv_feed.looks_like((DOCUMENTS / "inventory_snapshot.tsv").read_bytes())
    assert not csv_feed.looks_like(b'{"events": []}')
    assert not csv_feed.looks_like(b"ISA*00*          *00*")
    assert not csv_feed.looks_like(b"just one word\n")


def _big_file(rows: int, header: bytes, row: str) -> bytes:
    return header + "".join(row.format(i=i) for i in range(rows)).encode()


def test_100k_shipment_rows_stream_with_flat_memory():
    body = _big_file(100_000, b"tracking,status,occurred_at\n", "T{i:07d},in_transit,2026-11-20T08:00:00Z\n")
    document = ParsedDocument()
    tracemalloc.start()
    try:
        count = 0
        for event in csv_feed.iter_parse(body, context(), document):
            count += 1
            assert event.kind == K.SHIPMENT_IN_TRANSIT
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 100_000
    assert document.warnings == []
    assert peak < 20 * 1024 * 1024


def test_100k_inventory_rows_parse_into_parts_with_modest_memory():
    body = _big_file(100_000, b"sku;quantity;warehouse\n", "SKU-{i:06d};{i};WH-LYON\n")
    tracemalloc.start()
    try:
        document = csv_feed.parse(body, context(feed="inventory_snapshot"))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(document.events) == 20
    assert sum(len(event.lines) for event in document.events) == 100_000
    assert document.events[0].attributes["parts"] == 20
    assert len({event.event_id for event in document.events}) == 20
    assert peak < 150 * 1024 * 1024


def test_too_many_bad_rows_keeps_the_first_warnings():
    body = _big_file(300, b"tracking,status,occurred_at\nOK,delivered,2026-11-20\n", ",delivered,2026-11-20\n")
    document = csv_feed.parse(body, context())
    assert len(document.events) == 1
    assert len(document.warnings) == csv_feed.MAX_WARNINGS + 1
    assert document.warnings[-1] == "... and 100 more bad rows"


# --- which channel reads a file sent without its format ----------------------------------------

STATUS_CHANNEL = {"csv": {"columns": SHIPMENT_COLUMNS}}
RELEASE_CHANNEL = {"csv": {"feed": "order_release", "columns": {"order": "Order No", "occurred_at": "Released At"}}}
STOCK_CHANNEL = {"csv": {"feed": "inventory_snapshot"}}
CHANNELS = {"status": STATUS_CHANNEL, "releases": RELEASE_CHANNEL, "stock": STOCK_CHANNEL}


@pytest.mark.parametrize(
    ("header", "channel"),
    [
        (b"Tracking No,Status,Event Time,City\n", "status"),
        (b"\xef\xbb\xbfTracking No;Status;Event Time\n", "status"),  # semicolons, BOM
        (b"Order No\tReleased At\tSKU\tQty\n", "releases"),  # tab
        (b"sku|qty|warehouse\n", "stock"),  # pipes, the canonical names
        (b"  tracking no ; STATUS ;EventTime\n", "status"),  # case and spaces do not matter
    ],
)
def test_the_header_row_names_the_channel(header, channel):
    assert csv_feed.channel_matching(header + b"x,y,z\n", CHANNELS, partner="ERP") == channel


def test_the_channel_reading_the_most_columns_wins_whatever_the_order():
    columns = {"order": "Order No", "occurred_at": "Released At", "warehouse": "DC"}
    wide = {"csv": {"feed": "order_release", "columns": columns}}
    body = b"Order No,Released At,DC,Item,Qty\nSO-1,2026-11-20T08:00:00Z,LYON,SKU-1,2\n"
    assert csv_feed.channel_matching(body, {"a-releases": RELEASE_CHANNEL, "b-wide": wide}) == "b-wide"
    assert csv_feed.channel_matching(body, {"b-wide": wide, "a-releases": RELEASE_CHANNEL}) == "b-wide"
    # as many columns read: the one with more configured columns, then the first code
    plain = {"csv": {"feed": "order_release"}}  # finds Order No and Released At by their names
    assert csv_feed.channel_matching(body, {"a": plain, "z": RELEASE_CHANNEL, "m": RELEASE_CHANNEL}) == "m"


def test_a_header_matching_no_channel_names_the_channels_and_the_header():
    body = b"Parcel;State;When\nT-1;delivered;2026-11-20\n"
    with pytest.raises(ParseError) as raised:
        csv_feed.channel_matching(body, CHANNELS, partner="ERP")
    assert str(raised.value) == (
        "the header row matches none of partner ERP's CSV channels: "
        "releases (order_release: Order No, Released At); status (shipment_status: Tracking No, Status, Event Time); "
        "stock (inventory_snapshot: sku, quantity); header read: Parcel, State, When"
    )


def test_a_channel_whose_mapping_is_unusable_never_matches_and_is_named():
    broken = {"csv": {"feed": "weather"}}
    with pytest.raises(ParseError, match=r"broken \(not usable: unknown CSV feed 'weather'"):
        csv_feed.channel_matching(b"sku,qty\n", {"broken": broken})


def test_a_configured_column_is_found_ignoring_case_and_spaces():
    body = b"TRACKING NO,status,event  time\nT-1,delivered,2026-11-20T08:00:00Z\n"
    [event] = csv_feed.parse(body, context(columns=SHIPMENT_COLUMNS)).events
    assert event.kind == K.SHIPMENT_DELIVERED


@pytest.mark.parametrize(
    "body",
    [
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR,;|\t",
        b"PK\x03\x04\x14\x00\x06\x00,sku,qty",
        b"ISA*00*          *00*          *ZZ*SENDER         *ZZ*RECEIVER       *",
        b"UNA:+.? 'UNB+UNOC:3+SENDER+RECEIVER+261120:0800+1'",
    ],
)
def test_binary_data_and_edi_are_not_taken_for_csv(body):
    assert not csv_feed.looks_like(body)

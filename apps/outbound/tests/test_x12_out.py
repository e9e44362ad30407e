"""Outbound 810 invoices: what we write must read back through our own X12 parser as the same invoice."""

import uuid
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from apps.ingest.parsers import ParseContext, ParsedDocument, get_parser
from apps.outbound.x12_out import control_number, invoice_810
from apps.timeline.events import CanonicalEvent, EventKind
from tests.factories import EdiIdentifierFactory, PartnerFactory

KEY = uuid.UUID("6f1c0c2e-5d7a-4b8e-9a43-0c8d2f4e1b77")
CHICAGO = ZoneInfo("America/Chicago")


@pytest.fixture
def partner(db, settings):
    settings.EDI_SENDER_ID = "ZZ:CONTROLTOWER"
    partner = PartnerFactory(code="BIGRETAIL", time_zone="America/Chicago")
    EdiIdentifierFactory(partner=partner, qualifier="ZZ", value="BIGRETAILEDI")
    return partner


def invoice(**fields: Any) -> dict[str, Any]:
    """An invoice.generated document as ``document_of`` publishes it."""
    return {
        "event_id": "rule:generated:INV-9001",
        "kind": "invoice.generated",
        "schema_version": 1,
        "occurred_at": "2026-11-25T15:30:00+00:00",
        "references": [
            {"kind": "invoice", "value": "INV-9001"},
            {"kind": "order", "value": "SO-1001"},
            {"kind": "po", "value": "PO-77001"},
        ],
        "amount": "230.00",
        "currency": "USD",
        "lines": [
            {"sku": "SKU-RED-M", "quantity": "12", "uom": "EA", "unit_price": "12.50"},
            {"sku": "VP-BLUE-L", "quantity": "4.5", "uom": "KG", "unit_price": "17.7778"},
        ],
        "source": {"partner": None, "channel": None},
        "orders": [{"number": "SO-1001", "region": "NA-East"}],
        **fields,
    }


def read_back(text: str, partner) -> ParsedDocument:
    context = ParseContext(partner=partner.code, time_zone=partner.time_zone)
    return get_parser("x12").parse(text.encode(), context)


def only_event(text: str, partner) -> CanonicalEvent:
    parsed = read_back(text, partner)
    assert parsed.warnings == []
    assert [ack.status for ack in parsed.acknowledgments] == ["accepted"]
    [event] = parsed.events
    return event


def refs(event: CanonicalEvent) -> list[tuple[str, str]]:
    return [(ref.kind.value, ref.value) for ref in event.references]


def lines_read(event: CanonicalEvent) -> list[tuple[str, Decimal, str, Decimal | None]]:
    return [(line.sku, line.quantity, line.uom, line.unit_price) for line in event.lines]


def lines_sent(payload: dict[str, Any]) -> list[tuple[str, Decimal, str, Decimal | None]]:
    return [
        (
            line["sku"],
            Decimal(line["quantity"]),
            line.get("uom", "EA"),
            Decimal(line["unit_price"]) if line.get("unit_price") is not None else None,
        )
        for line in payload["lines"]
    ]


def segments(text: str) -> list[str]:
    return [line.removesuffix("~") for line in text.splitlines()]


def test_the_810_reads_back_as_the_same_invoice(partner):
    payload = invoice()

    event = only_event(invoice_810(payload, partner=partner, key=KEY), partner)

    assert event.kind == EventKind.INVOICE_GENERATED
    assert refs(event) == [("invoice", "INV-9001"), ("po", "PO-77001"), ("order", "SO-1001")]
    assert lines_read(event) == lines_sent(payload)
    assert [line.line_number for line in event.lines] == ["1", "2"]
    assert (event.amount, event.currency) == (Decimal("230.00"), "USD")
    assert event.occurred_at == datetime(2026, 11, 25, tzinfo=CHICAGO)


def test_the_envelope_is_addressed_from_our_sender_id_to_the_partner(partner, settings):
    settings.EDI_SENDER_ID = "01:123456789"

    text = invoice_810(invoice(), partner=partner, key=KEY)

    isa, gs, header, big = segments(text)[:4]
    control = f"{int(KEY.hex, 16) % 999_999_999 + 1:09d}"
    assert len(isa) + 1 == 106
    assert isa == (
        f"ISA*00*          *00*          *01*123456789      *ZZ*BIGRETAILEDI   *261125*0930*U*00401*{control}*0*P*>"
    )
    assert gs == f"GS*IN*123456789*BIGRETAILEDI*20261125*0930*{int(control)}*X*004010"
    assert header == "ST*810*0001"
    assert big == "BIG*20261125*INV-9001**PO-77001"
    assert segments(text)[-3:] == ["SE*9*0001", f"GE*1*{int(control)}", f"IEA*1*{control}"]


def test_the_invoice_date_is_the_partners_local_date(partner):
    text = invoice_810(invoice(occurred_at="2026-11-26T03:30:00+00:00"), partner=partner, key=KEY)

    assert "BIG*20261125*INV-9001**PO-77001" in segments(text)
    assert only_event(text, partner).occurred_at == datetime(2026, 11, 25, tzinfo=CHICAGO)


def test_the_same_key_writes_the_same_bytes_and_another_key_another_control_number(partner):
    other = uuid.UUID("0e9b7d34-18a2-4c61-b0f5-7a3e2d9c4f10")

    first = invoice_810(invoice(), partner=partner, key=KEY)
    again = invoice_810(invoice(), partner=partner, key=KEY)
    another = invoice_810(invoice(), partner=partner, key=other)

    assert first == again
    assert control_number(KEY) != control_number(other)
    assert segments(another)[0].split("*")[13] == f"{control_number(other):09d}"
    assert segments(first)[0].split("*")[13] == f"{control_number(KEY):09d}"


def test_control_numbers_stay_within_nine_digits():
    assert control_number(uuid.UUID(int=0)) == 1
    assert control_number(uuid.UUID(int=999_999_998)) == 999_999_999
    assert control_number(uuid.UUID(int=2**128 - 1)) <= 999_999_999


def test_delimiters_and_line_breaks_in_values_are_cleaned_out(partner):
    payload = invoice(
        references=[{"kind": "invoice", "value": "INV*90~01"}, {"kind": "order", "value": "SO>1"}],
        lines=[{"sku": "SKU*RED\nM", "quantity": "1", "uom": "E~A", "unit_price": "2"}],
    )

    text = invoice_810(payload, partner=partner, key=KEY)

    assert segments(text)[3:6] == ["BIG*20261125*INV9001", "CUR*SE*USD", "REF*VN*SO1"]
    assert "IT1*1*1*EA*2**VP*SKUREDM" in segments(text)
    event = only_event(text, partner)
    assert refs(event) == [("invoice", "INV9001"), ("order", "SO1")]
    assert lines_read(event) == [("SKUREDM", Decimal(1), "EA", Decimal(2))]


def test_a_caret_is_kept_because_004010_declares_no_repetition_separator(partner):
    payload = invoice(references=[{"kind": "invoice", "value": "INV^7"}])

    assert refs(only_event(invoice_810(payload, partner=partner, key=KEY), partner))[0] == ("invoice", "INV^7")


def test_an_invoice_number_made_only_of_delimiters_is_refused(partner):
    with pytest.raises(ValueError, match="no usable invoice reference"):
        invoice_810(invoice(references=[{"kind": "invoice", "value": "*~"}]), partner=partner, key=KEY)


def test_a_partner_without_an_edi_identifier_gets_a_clear_error(db):
    partner = PartnerFactory(code="NOEDI")

    with pytest.raises(ValueError, match="partner NOEDI has no EDI identifier"):
        invoice_810(invoice(), partner=partner, key=KEY)


def test_an_identifier_that_does_not_fit_an_isa_is_skipped_for_one_that_does(db):
    partner = PartnerFactory(code="MIXED", time_zone="UTC")
    EdiIdentifierFactory(partner=partner, qualifier="14", value="5412345000013-TOO-LONG-FOR-ISA")
    EdiIdentifierFactory(partner=partner, qualifier="ZZ", value="MIXEDX12")

    isa = segments(invoice_810(invoice(), partner=partner, key=KEY))[0]

    assert isa.split("*")[7:9] == ["ZZ", "MIXEDX12       "]


def test_a_partner_with_only_edifact_ids_gets_a_clear_error(db):
    partner = PartnerFactory(code="EDIFACTONLY")
    EdiIdentifierFactory(partner=partner, qualifier="ZZZ", value="EDIFACTONLY")

    with pytest.raises(ValueError, match="none of its EDI identifiers .ZZZ:EDIFACTONLY. fits an ISA"):
        invoice_810(invoice(), partner=partner, key=KEY)


@pytest.mark.parametrize("sender", ["CONTROLTOWER", "ZZZ:CONTROLTOWER", "ZZ:THIS-IS-TOO-LONG-FOR-AN-ISA", "ZZ:A*B"])
def test_a_malformed_sender_id_setting_is_refused(partner, settings, sender):
    settings.EDI_SENDER_ID = sender

    with pytest.raises(ValueError, match="EDI_SENDER_ID"):
        invoice_810(invoice(), partner=partner, key=KEY)


def test_only_invoice_generated_events_are_written(partner):
    with pytest.raises(ValueError, match="not 'invoice.posted'"):
        invoice_810(invoice(kind="invoice.posted"), partner=partner, key=KEY)


@pytest.mark.parametrize(
    ("amount", "tds", "read"),
    [
        ("1234.565", "123457", Decimal("1234.57")),
        ("1234.564", "123456", Decimal("1234.56")),
        ("0.005", "1", Decimal("0.01")),
        ("-10.125", "-1013", Decimal("-10.13")),
        ("230", "23000", Decimal("230")),
        ("1E+3", "100000", Decimal("1000")),
        ("0.001", "0", Decimal("0")),
    ],
)
def test_the_total_is_written_in_cents_rounded_half_up(partner, amount, tds, read):
    text = invoice_810(invoice(amount=amount), partner=partner, key=KEY)

    assert f"TDS*{tds}" in segments(text)
    assert only_event(text, partner).amount == read


def test_quantities_and_prices_are_plain_numbers(partner):
    lines = [{"sku": "A", "quantity": "1.500", "unit_price": "2E+1"}, {"sku": "B", "quantity": "-0.000"}]

    text = invoice_810(invoice(lines=lines), partner=partner, key=KEY)

    assert [s for s in segments(text) if s.startswith("IT1")] == ["IT1*1*1.5*EA*20**VP*A", "IT1*2*0*EA***VP*B"]
    assert lines_read(only_event(text, partner)) == [("A", Decimal("1.5"), "EA", Decimal(20)), ("B", 0, "EA", None)]


def test_many_lines_keep_their_own_line_numbers(partner):
    lines = [
        {"sku": f"SKU-{n}", "quantity": str(n), "uom": "CS", "unit_price": f"{n}.25", "line_number": f"{n * 10}"}
        for n in range(1, 8)
    ]
    payload = invoice(lines=lines)

    text = invoice_810(payload, partner=partner, key=KEY)

    event = only_event(text, partner)
    assert lines_read(event) == lines_sent(payload)
    assert [line.line_number for line in event.lines] == ["10", "20", "30", "40", "50", "60", "70"]
    assert "CTT*7" in segments(text)


def test_an_invoice_without_lines_amount_or_currency(partner):
    payload = invoice(lines=[])
    del payload["amount"], payload["currency"]

    text = invoice_810(payload, partner=partner, key=KEY)

    assert segments(text)[3:7] == ["BIG*20261125*INV-9001**PO-77001", "REF*VN*SO-1001", "CTT*0", "SE*5*0001"]
    event = only_event(text, partner)
    assert (event.lines, event.amount, event.currency) == ([], None, None)


def test_further_orders_and_pos_become_refs(partner):
    payload = invoice(
        references=[
            {"kind": "invoice", "value": "INV-1"},
            {"kind": "po", "value": "PO-1"},
            {"kind": "po", "value": "PO-2"},
            {"kind": "order", "value": "SO-1"},
            {"kind": "order", "value": "SO-2"},
            {"kind": "shipment", "value": "SHP-1"},
        ]
    )

    text = invoice_810(payload, partner=partner, key=KEY)

    assert segments(text)[3:8] == [
        "BIG*20261125*INV-1**PO-1",
        "CUR*SE*USD",
        "REF*VN*SO-1",
        "REF*VN*SO-2",
        "REF*PO*PO-2",
    ]
    # Our reader takes the PO from BIG04 only; REF*PO is for the partner.
    assert refs(only_event(text, partner)) == [
        ("invoice", "INV-1"),
        ("po", "PO-1"),
        ("order", "SO-1"),
        ("order", "SO-2"),
    ]


def test_a_line_without_a_sku_or_a_readable_quantity_is_refused(partner):
    with pytest.raises(ValueError, match="line 2: expected a SKU"):
        invoice_810(
            invoice(lines=[{"sku": "A", "quantity": "1"}, {"sku": "~", "quantity": "1"}]), partner=partner, key=KEY
        )
    with pytest.raises(ValueError, match="line 1 quantity: expected a decimal number, found 'NaN'"):
        invoice_810(invoice(lines=[{"sku": "A", "quantity": "NaN"}]), partner=partner, key=KEY)


# Round trip over random invoices ------------------------------------------------------------------

REFERENCE = st.text(alphabet="ABCDEFGHJKLMNPQRSTUVWXYZ0123456789-/.", min_size=1, max_size=20)
SKU = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_./", min_size=1, max_size=30)
QUANTITY = st.decimals(min_value=0, max_value=Decimal("9999999"), places=3, allow_nan=False, allow_infinity=False)
PRICE = st.decimals(min_value=0, max_value=Decimal("999999"), places=4, allow_nan=False, allow_infinity=False)
LINE = st.fixed_dictionaries(
    {"sku": SKU, "quantity": QUANTITY.map(str)},
    optional={"uom": st.sampled_from(["EA", "CS", "KG", "LB", "PL"]), "unit_price": PRICE.map(str)},
)
INVOICE = st.fixed_dictionaries(
    {
        "invoice": REFERENCE,
        "occurred_at": st.datetimes(
            min_value=datetime(2000, 1, 2), max_value=datetime(2099, 12, 30), timezones=st.just(UTC)
        ),
        "lines": st.lists(LINE, max_size=6),
    },
    optional={
        "order": REFERENCE,
        "po": REFERENCE,
        "amount": st.decimals(min_value=Decimal("-1e9"), max_value=Decimal("1e9"), places=4).map(str),
        "currency": st.sampled_from(["USD", "EUR", "CAD"]),
    },
)


@given(drawn=INVOICE, key=st.uuids())
def test_any_invoice_reads_back_the_same(partner, drawn, key):
    references = [{"kind": kind, "value": drawn[kind]} for kind in ("invoice", "po", "order") if kind in drawn]
    payload = invoice(
        occurred_at=drawn["occurred_at"].isoformat(),
        references=references,
        lines=drawn["lines"],
        orders=[],
        amount=drawn.get("amount"),
        currency=drawn.get("currency"),
    )

    event = only_event(invoice_810(payload, partner=partner, key=key), partner)

    assert refs(event) == [(ref["kind"], ref["value"]) for ref in references]
    assert lines_read(event) == lines_sent(payload)
    amount = drawn.get("amount")
    assert event.amount == (Decimal(amount).quantize(Decimal("0.01"), ROUND_HALF_UP) if amount else None)
    assert event.currency == drawn.get("currency")
    assert event.occurred_at.date() == drawn["occurred_at"].astimezone(CHICAGO).date()

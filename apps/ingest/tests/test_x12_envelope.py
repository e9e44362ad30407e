"""Envelope checks: each problem reported precisely, the content still used, the 997 saying so."""

from datetime import UTC, datetime

import pytest

from apps.ingest.parsers import x12
from apps.ingest.parsers.base import ParseContext
from apps.ingest.parsers.x12_reader import decode, read_interchanges
from apps.ingest.parsers.x12_writer import Envelope, OutboundSet, Party, X12Writer, write_interchange
from apps.ingest.tests.test_x12_support import CONTEXT, document, envelope, transaction

STATUS_LINES = ["B10*PRO-1*SHP-1*SAIA", "LX*1", "AT7*D1*NS***20261121*1015*ET", "MS1*MEMPHIS*TN*US"]
# Segments: 1 ISA, 2 GS, 3 ST, 4 B10, 5 LX, 6 AT7, 7 MS1, 8 SE, 9 GE, 10 IEA.
STATUS = envelope(transaction("214", STATUS_LINES), functional_id="QM")


def parse_text(text: str, context: ParseContext = CONTEXT):
    return x12.parse(text.encode("latin-1"), context)


def ack_segments(ack) -> list[str]:
    """Read our own 997 back with our own reader: the segments between ST and SE."""
    [interchange], notes = read_interchanges(decode(ack.body.encode()))
    assert notes == []
    [group] = interchange.groups
    [tx] = group.sets
    assert tx.trailer is not None
    assert tx.trailer.get(1) == str(len(tx.segments) + 2)
    return ["*".join(segment.elements) for segment in tx.segments]


def test_a_clean_document_is_accepted():
    parsed = parse_text(STATUS)

    assert parsed.warnings == []
    assert [event.kind.value for event in parsed.events] == ["shipment.delivered"]
    [ack] = parsed.acknowledgments
    assert ack.status == "accepted"
    assert ack_segments(ack) == ["AK1*QM*101", "AK2*214*0001", "AK5*A", "AK9*A*1*1*1"]


@pytest.mark.parametrize(
    ("old", "new", "warning", "ak5", "ak9"),
    [
        (
            "IEA*1*000000101",
            "IEA*1*000000999",
            "X12 interchange 000000101: segment 10 (IEA) element IEA02: expected '000000101' (ISA13), "
            "found '000000999'",
            "AK5*E",
            "AK9*E*1*1*1",
        ),
        (
            "IEA*1*",
            "IEA*2*",
            "X12 interchange 000000101: segment 10 (IEA) element IEA01: expected 1 (functional groups in the "
            "interchange), found '2'",
            "AK5*E",
            "AK9*E*1*1*1",
        ),
        (
            "GE*1*101",
            "GE*1*999",
            "X12 group 101 (QM): segment 9 (GE) element GE02: expected '101' (GS06), found '999'",
            "AK5*E",
            "AK9*E*1*1*1*4",
        ),
        (
            "GE*1*101",
            "GE*3*101",
            "X12 group 101 (QM): segment 9 (GE) element GE01: expected 1 (transaction sets in the group), found '3'",
            "AK5*E",
            "AK9*E*3*1*1*5",
        ),
        (
            "SE*6*0001",
            "SE*6*0002",
            "X12 214 set 0001: segment 8 (SE) element SE02: expected '0001' (ST02), found '0002'",
            "AK5*E*3",
            "AK9*E*1*1*1",
        ),
        (
            "SE*6*",
            "SE*9*",
            "X12 214 set 0001: segment 8 (SE) element SE01: expected 6 (segments from ST to SE), found '9'",
            "AK5*E*4",
            "AK9*E*1*1*1",
        ),
        (
            "GS*QM*",
            "GS*SH*",
            "X12 214 set 0001: segment 2 (GS) element GS01: expected 'QM' for a 214 set, found 'SH'",
            "AK5*E",
            "AK9*E*1*1*1",
        ),
        (
            "*20261121*1015*ET",
            "*261121*1015*ET",
            "X12 214 set 0001: segment 6 (AT7) element AT705: expected a date CCYYMMDD, found '261121' (6 digits); "
            "read as 20261121",
            "AK5*E*5",
            "AK9*E*1*1*1",
        ),
    ],
    ids=["ISA13-IEA02", "IEA01", "GS06-GE02", "GE01", "ST02-SE02", "SE01", "GS01", "six-digit-date"],
)
def test_envelope_problems_are_warnings_and_the_content_is_used(old, new, warning, ak5, ak9):
    text = STATUS.replace(old, new, 1)
    assert text != STATUS

    parsed = parse_text(text)

    assert parsed.warnings == [warning]
    [event] = parsed.events
    assert event.kind.value == "shipment.delivered"
    assert event.occurred_at == datetime(2026, 11, 21, 15, 15, tzinfo=UTC)
    [ack] = parsed.acknowledgments
    assert ack.status == "accepted_with_errors"
    segments = ack_segments(ack)
    assert segments[2:] == [ak5, ak9]
    assert segments[0] == ("AK1*SH*101" if old == "GS*QM*" else "AK1*QM*101")


@pytest.mark.parametrize("bad_date", ["2026112", "CCYYMMDD", "20261131"])
def test_an_unreadable_status_date_falls_back_to_the_document_date(bad_date):
    parsed = parse_text(STATUS.replace("20261121*1015", f"{bad_date}*1015"))

    reason = "(no such day)" if bad_date == "20261131" else ""
    expected = f"expected a date CCYYMMDD, found {bad_date!r}{' ' + reason if reason else ''}; ignored"
    assert parsed.warnings == [
        f"X12 214 set 0001: segment 6 (AT7) element AT705: {expected}",
        "X12 214 set 0001: segment 6 (AT7) element AT705: no usable date for status D1; the document date is used",
    ]
    # GS04/GS05 20261120 1403, in the partner's zone (America/Chicago).
    assert parsed.events[0].occurred_at == datetime(2026, 11, 20, 20, 3, tzinfo=UTC)
    assert ack_segments(parsed.acknowledgments[0])[2] == "AK5*E*5"


def test_eight_digit_times_are_hundredths_of_a_second():
    parsed = parse_text(STATUS.replace("*1015*ET", "*10153099*ET"))

    assert parsed.warnings == []
    assert parsed.events[0].occurred_at == datetime(2026, 11, 21, 15, 15, 30, 990000, tzinfo=UTC)


def test_an_impossible_time_is_ignored():
    parsed = parse_text(STATUS.replace("*1015*ET", "*2561*ET"))

    assert parsed.warnings == [
        "X12 214 set 0001: segment 6 (AT7) element AT706: expected a time HHMM[SS[DD]], found '2561' "
        "(out of range); ignored"
    ]
    assert parsed.events[0].occurred_at == datetime(2026, 11, 21, 5, 0, tzinfo=UTC)


def test_six_digit_dates_are_the_standard_before_004010():
    text = STATUS.replace("004010", "003060").replace("*00401*", "*00306*")
    text = text.replace("AT7*D1*NS***20261121*1015*ET", "AT7*D1*NS***261121*20*1015*ET")

    parsed = parse_text(text)

    assert parsed.warnings == []
    assert parsed.events[0].occurred_at == datetime(2026, 11, 21, 15, 15, tzinfo=UTC)


def test_a_set_type_we_do_not_handle_is_acknowledged_and_reported():
    body = transaction("880", ["G01*20261120*INV-1*20261101*PO-1"]) + transaction(
        "856", ["BSN*00*SHP-1*20261120"], "0002"
    )
    parsed = parse_text(envelope(body, functional_id="GR"))

    assert parsed.unsupported == ["X12 880 (Grocery Products Invoice, set 0001 of group 101) is not supported"]
    assert parsed.warnings == ["X12 856 set 0002: segment 2 (GS) element GS01: expected 'SH' for a 856 set, found 'GR'"]
    assert len(parsed.events) == 1
    assert ack_segments(parsed.acknowledgments[0]) == [
        "AK1*GR*101",
        "AK2*880*0001",
        "AK5*A",
        "AK2*856*0002",
        "AK5*E",
        "AK9*E*2*2*2",
    ]


def test_a_set_without_its_required_segment_is_rejected_alone():
    body = transaction("856", ["HL*1**S", "TD5**2*ABFS"]) + transaction("856", ["BSN*00*SHP-2*20261120"], "0002")
    parsed = parse_text(envelope(body))

    assert parsed.warnings == ["X12 856 set 0001: rejected: required segment BSN is missing"]
    assert [event.references[0].value for event in parsed.events] == ["SHP-2"]
    [ack] = parsed.acknowledgments
    assert ack.status == "accepted_with_errors"
    assert ack_segments(ack) == ["AK1*SH*101", "AK2*856*0001", "AK5*R", "AK2*856*0002", "AK5*A", "AK9*P*2*2*1"]


def test_a_set_with_no_se_followed_by_another_set_is_rejected():
    first = transaction("856", ["BSN*00*SHP-1*20261120", "HL*1**S"]).replace("SE*4*0001~\n", "")
    second = transaction("856", ["BSN*00*SHP-2*20261120"], "0002")
    parsed = parse_text(envelope(first + second))

    assert parsed.warnings == [
        "X12 856 set 0001: rejected: truncated: expected SE after segment 5 (HL), found segment 6 (ST); "
        "the set is not used"
    ]
    assert ack_segments(parsed.acknowledgments[0])[2] == "AK5*R*2"


def test_all_sets_rejected_rejects_the_group():
    parsed = parse_text(envelope(transaction("810", ["REF*VN*SO-1"]), functional_id="IN"))

    assert parsed.events == []
    assert parsed.acknowledgments[0].status == "rejected"
    assert ack_segments(parsed.acknowledgments[0]) == ["AK1*IN*101", "AK2*810*0001", "AK5*R", "AK9*R*1*1*0"]


def test_the_997_is_addressed_back_to_the_sender_and_is_deterministic():
    received = datetime(2026, 11, 21, 9, 30, tzinfo=UTC)
    context = ParseContext(time_zone="America/Chicago", received_at=received)
    first = parse_text(STATUS, context).acknowledgments[0]
    again = parse_text(STATUS, context).acknowledgments[0]

    assert first == again
    [interchange], _ = read_interchanges(first.body)
    isa, gs = interchange.header, interchange.groups[0].header
    assert (isa.get(6), isa.get(8), isa.get(9), isa.get(10), isa.get(13)) == (
        "CTRLTOWER",
        "ACMEWMS",
        "261121",
        "0930",
        first.control_number,
    )
    assert (gs.get(1), gs.get(2), gs.get(3), gs.get(6), gs.get(8)) == (
        "FA",
        "CTRLTOWER",
        "ACMEWMS",
        str(int(first.control_number)),
        "004010",
    )
    assert first.format == "x12"


def test_our_997_read_as_an_inbound_document_makes_no_events_no_warnings_and_no_997():
    ack = parse_text(STATUS).acknowledgments[0]

    parsed = x12.parse(ack.body.encode(), CONTEXT)

    assert (parsed.events, parsed.warnings, parsed.acknowledgments) == ([], [], [])


def test_an_inbound_997_that_rejects_our_document_is_reported():
    body = transaction("997", ["AK1*IN*4001", "AK2*810*0001", "AK5*R*5", "AK9*R*1*1*0"])
    parsed = parse_text(envelope(body, functional_id="FA"))

    assert parsed.events == []
    assert parsed.acknowledgments == []
    assert parsed.warnings == [
        "X12 997 set 0001 from ZZ:ACMEWMS: the partner did not accept group 4001 (IN) (AK9 R); "
        "rejected sets: 0001 (810)"
    ]


def test_a_resend_under_new_control_numbers_gives_the_same_event_ids():
    resent = (
        STATUS.replace("000000101", "000000777")
        .replace("*101*X*", "*777*X*")
        .replace("GE*1*101", "GE*1*777")
        .replace("*0001~", "*0042~")
    )
    assert resent != STATUS

    original, again = parse_text(STATUS), parse_text(resent)

    assert again.warnings == []
    assert [event.event_id for event in again.events] == [event.event_id for event in original.events]
    assert again.acknowledgments[0].control_number != original.acknowledgments[0].control_number


def test_event_ids_depend_on_the_sender():
    as_partner = parse_text(STATUS, ParseContext(partner="SAIA", time_zone="America/Chicago"))
    other = parse_text(STATUS.replace("ACMEWMS", "OTHERWMS"))

    assert as_partner.events[0].event_id.startswith("x12:SAIA:214:")
    assert other.events[0].event_id != parse_text(STATUS).events[0].event_id


def test_the_writer_envelope_for_005010_and_its_guard_against_delimiters():
    envelope_005010 = Envelope(
        sender=Party("ZZ", "CTRLTOWER"),
        receiver=Party("01", "123456789"),
        application_sender="CTRLTOWER",
        application_receiver="BUYER",
        control_number=42,
        created_at=datetime(2026, 11, 25, 8, 5, tzinfo=UTC),
        version="005010",
    )
    text = write_interchange(envelope_005010, "IN", [OutboundSet("810", [["BIG", "20261125", "INV-1"]])])

    assert text.splitlines()[0] == (
        "ISA*00*          *00*          *ZZ*CTRLTOWER      *01*123456789      *261125*0805*^*00501*000000042*0*P*>~"
    )
    assert len(text.splitlines()[0]) == 106
    assert text.splitlines()[2:] == [
        "ST*810*0001~",
        "BIG*20261125*INV-1~",
        "SE*3*0001~",
        "GE*1*42~",
        "IEA*1*000000042~",
    ]
    with pytest.raises(ValueError, match="contains a delimiter"):
        X12Writer().segment(["REF", "BM", "A*B"])


def test_the_997_answers_each_group_of_a_multi_group_interchange():
    parsed = parse_text(document("850_940_945_multi_version.edi"))

    assert [ack_segments(ack)[0] for ack in parsed.acknowledgments] == ["AK1*PO*505", "AK1*OW*506*005010", "AK1*SW*507"]
    versions = [read_interchanges(ack.body)[0][0].groups[0].header.get(8) for ack in parsed.acknowledgments]
    assert versions == ["004010", "005010", "004010VICS"]

"""Reading X12 whatever the layout: delimiters, line breaks, wrapping, several interchanges."""

from datetime import UTC, datetime

import pytest

from apps.ingest.parsers import x12
from apps.ingest.parsers.base import ParseError
from apps.ingest.parsers.x12_reader import decode, read_interchanges
from apps.ingest.tests.test_x12_support import (
    CONTEXT,
    DOCUMENTS,
    LAYOUTS,
    comparable,
    document,
    envelope,
    isa,
    transaction,
)

SHIP_NOTICE = document("856_sopi.edi")
STATUS = document("214_pipe_lines.edi")


def parse_text(text: str, encoding: str = "utf-8"):
    return x12.parse(text.encode(encoding), CONTEXT)


@pytest.fixture(scope="module")
def baseline():
    parsed = parse_text(SHIP_NOTICE)
    assert parsed.warnings == []
    assert len(parsed.events) == 1
    return comparable(parsed.events)


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_every_layout_reads_to_the_same_events(layout, baseline):
    parsed = parse_text(LAYOUTS[layout](SHIP_NOTICE))

    assert parsed.warnings == []
    assert comparable(parsed.events) == baseline
    assert [ack.status for ack in parsed.acknowledgments] == ["accepted"]


@pytest.mark.parametrize("terminator", ["~", "'", ".", "$", "\x85", "\n"])
def test_terminators_including_a_non_ascii_byte_and_the_line_break(terminator):
    """The 214 has no decimal point, so even ``.`` can end its segments."""
    classic = STATUS.replace("|", "*").replace("\n", "~\n")
    text = classic.replace("~\n", terminator + ("" if terminator == "\n" else "\n"))

    parsed = parse_text(text, encoding="latin-1")

    assert parsed.warnings == []
    assert [event.attributes["status_code"] for event in parsed.events] == ["AF", "X6", "AG", "ZZ"]


def test_utf8_non_ascii_terminator_and_a_byte_order_mark():
    classic = STATUS.replace("|", "*").replace("\n", "§")
    parsed = x12.parse(("\ufeff \r\n" + classic).encode("utf-8"), CONTEXT)

    assert parsed.warnings == []
    assert len(parsed.events) == 4


def test_line_break_terminator_with_indented_segments():
    """No terminator character, CR LF after each segment, and every segment after the ISA indented
    by its loop depth: the indentation is layout, not a segment terminator."""
    body = (DOCUMENTS / "214_crlf_indented.edi").read_bytes()
    assert b"*>\r\n  GS*QM*" in body

    parsed = x12.parse(body, CONTEXT)

    assert parsed.warnings == []
    assert [ack.status for ack in parsed.acknowledgments] == ["accepted"]
    assert [(event.kind.value, event.attributes["status_code"], event.location.city) for event in parsed.events] == [
        ("shipment.picked_up", "AF", "RENO"),
        ("shipment.in_transit", "X4", "SALT LAKE CITY"),
        ("shipment.delivered", "D1", "DENVER"),
    ]
    assert [(ref.kind.value, ref.value) for ref in parsed.events[-1].references] == [
        ("pro", "PRO-880214"),
        ("shipment", "SHP-6120"),
        ("bol", "BOL-5521907"),
        ("po", "PO-88120"),
    ]
    assert parsed.events[-1].occurred_at == datetime(2026, 12, 4, 18, 30, tzinfo=UTC)  # 11:30 MT in winter


@pytest.mark.parametrize(
    ("line_break", "indent", "after_isa16"),
    [("\r\n", "   ", ""), ("\n", "\t", ""), ("\r\n", "  ", "  "), ("\r\n\r\n", " \t ", "")],
    ids=["crlf-spaces", "lf-tab", "trailing-spaces-after-isa16", "blank-line-then-mixed-indent"],
)
def test_line_break_terminator_whatever_the_blanks_around_it(line_break, indent, after_isa16):
    first, *rest = STATUS.replace("|", "*").splitlines()
    text = first + after_isa16 + line_break + "".join(indent + line + line_break for line in rest)

    parsed = parse_text(text)

    assert parsed.warnings == []
    assert [event.attributes["status_code"] for event in parsed.events] == ["AF", "X6", "AG", "ZZ"]


def test_a_blank_after_isa16_on_the_same_line_is_still_a_bad_terminator():
    first, *rest = STATUS.replace("|", "*").splitlines()
    text = first + " " + " ".join(rest)

    with pytest.raises(ParseError) as raised:
        parse_text(text)

    assert str(raised.value) == "segment 1 (ISA): expected a segment terminator after ISA16 ':', found ' '"


@pytest.mark.parametrize("padded", [True, False])
def test_isa_that_is_not_106_characters(padded):
    body = transaction("856", ["BSN*00*SHP-1*20261120*1400", "HL*1**S"])
    text = envelope(body).replace(isa(), isa(padded=padded), 1)
    if not padded:
        assert len(isa(padded=False).rstrip("\n")) < 106

    parsed = parse_text(text)

    assert parsed.warnings == []
    assert parsed.events[0].references[0].value == "SHP-1"
    assert x12.sender_ids(text.encode()) == [("ZZ", "ACMEWMS"), ("GS", "ACMEWMS")]


def test_over_long_isa_id_fields():
    body = transaction("856", ["BSN*00*SHP-1*20261120*1400"])
    text = envelope(body).replace("ACMEWMS        ", "ACMEWMS-OVERLONG-ID   ", 1)

    parsed = parse_text(text)

    assert parsed.events[0].event_id.startswith("x12:ZZ:ACMEWMS-OVERLONG-ID:856:")


def test_two_interchanges_back_to_back_with_different_delimiters():
    first = envelope(transaction("856", ["BSN*00*SHP-1*20261120*1400"]))
    second = envelope(
        transaction("856", ["BSN*00*SHP-2*20261121*0900"]), control="000000102", group="102", sender="OTHERWMS"
    )
    text = first.rstrip("\n") + LAYOUTS["pipes_and_line_breaks"](second)

    parsed = parse_text(text)

    assert [event.references[0].value for event in parsed.events] == ["SHP-1", "SHP-2"]
    assert len(parsed.acknowledgments) == 2
    assert x12.sender_ids(text.encode()) == [
        ("ZZ", "ACMEWMS"),
        ("GS", "ACMEWMS"),
        ("ZZ", "OTHERWMS"),
        ("GS", "OTHERWMS"),
    ]


def test_groups_of_different_versions_in_one_interchange():
    parsed = parse_text(document("850_940_945_multi_version.edi"))

    assert [event.kind.value for event in parsed.events] == ["order.created", "order.released", "shipment.manifested"]
    # 004010VICS agrees with ISA12 00401; 005010 does not.
    assert parsed.warnings == [
        "X12 group 506 (OW): segment 15 (GS) element GS08: version '005010' does not match ISA12 '00401'; "
        "the group is read as 005010"
    ]
    assert [ack.status for ack in parsed.acknowledgments] == ["accepted"] * 3


def test_interchange_that_ends_after_se_keeps_its_content():
    text = SHIP_NOTICE.split("GE*")[0]

    parsed = parse_text(text)

    assert len(parsed.events) == 1
    assert parsed.warnings == [
        "X12 interchange 000000101: no IEA: expected IEA after segment 36 (SE), found the end of the interchange",
        "X12 group 101 (SH): no GE: expected GE after segment 36 (SE), found none",
    ]
    assert parsed.acknowledgments[0].status == "accepted_with_errors"


def test_garbage_after_the_last_interchange_is_reported():
    parsed = parse_text(SHIP_NOTICE + "THIS IS NOT EDI\n")

    assert len(parsed.events) == 1
    assert parsed.warnings == [
        "after segment 38: ignored 15 characters that are not an interchange (starting 'THIS IS NOT EDI')"
    ]


def test_latin1_bytes_are_read():
    text = SHIP_NOTICE.replace("ACME DC LYON", "ACME DC MÂCON")
    parsed = x12.parse(text.encode("latin-1"), CONTEXT)

    assert parsed.events[0].location.name == "ACME DC MÂCON"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "not an X12 interchange: expected 'ISA' at the start, found ''"),
        (b"UNB+UNOC:3+X+Y'", "not an X12 interchange: expected 'ISA' at the start, found \"UNB+UNOC:3+X+Y'\""),
        (
            b"ISA*00*          *00*   ",
            "segment 1 (ISA): expected 16 element separators '*', found 4 before the end of the input (truncated ISA)",
        ),
        (
            isa().replace(">~", ">G").encode(),
            "segment 1 (ISA): expected a segment terminator after ISA16 '>', found 'G'",
        ),
        (
            isa().encode(),
            "no transaction set: expected an ST, found the end of the input after segment 1 (ISA)",
        ),
        (
            (isa() + "GS*SH*A*B*20261120*1403*1*X*004010~").encode(),
            "no transaction set: expected an ST, found the end of the input after segment 2 (GS)",
        ),
    ],
)
def test_unreadable_documents_raise_a_precise_parse_error(body, message):
    with pytest.raises(ParseError) as raised:
        x12.parse(body, CONTEXT)

    assert str(raised.value) == message


def test_a_set_cut_off_mid_way_is_rejected_alone():
    text = SHIP_NOTICE.split("HL*6*1*O")[0]

    parsed = parse_text(text)

    assert parsed.events == []
    assert parsed.warnings == [
        "X12 interchange 000000101: no IEA: expected IEA after segment 26 (SN1), found the end of the interchange",
        "X12 group 101 (SH): no GE: expected GE after segment 26 (SN1), found none",
        "X12 856 set 0001: rejected: truncated: expected SE after segment 26 (SN1), found the end of the input; "
        "the set is not used",
    ]
    assert parsed.acknowledgments[0].status == "rejected"


def test_looks_like():
    assert x12.looks_like(b"\xef\xbb\xbf\r\n  " + SHIP_NOTICE.encode())
    assert x12.looks_like(STATUS.encode())
    assert not x12.looks_like(b"UNA:+.? 'UNB+UNOC:3")
    assert not x12.looks_like(b'{"events": []}')
    assert not x12.looks_like(b"ISAAC,NEWTON\n")


@pytest.mark.parametrize("garbage", [b"", b"\x00\xff\xfe", b"ISA*00", b"hello"])
def test_sender_ids_never_raise(garbage):
    assert x12.sender_ids(garbage) == []


def test_segments_are_numbered_across_the_file():
    interchanges, notes = read_interchanges(decode(SHIP_NOTICE.encode()))

    assert notes == []
    [interchange] = interchanges
    [group] = interchange.groups
    [tx] = group.sets
    assert (tx.header.number, tx.trailer.number, interchange.trailer.number) == (3, 36, 38)
    assert interchange.delimiters.segment == "~"
    assert interchange.delimiters.repetition is None  # 004010: ISA11 is "U"

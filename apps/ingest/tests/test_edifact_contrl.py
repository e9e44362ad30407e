"""CONTRL acknowledgments of inbound EDIFACT: what each says about the interchange it answers."""

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from apps.ingest.parsers import edifact
from apps.ingest.parsers.base import Acknowledgment, ParseContext, ParseError

DOCUMENTS = Path(__file__).parent / "documents" / "edifact"
CONTEXT = ParseContext(time_zone="Europe/Berlin", received_at=datetime(2026, 11, 20, 9, 30, tzinfo=UTC))
UNB = "UNB+UNOA:3+SENDER:ZZ+RECEIVER:ZZ+261120:1000+REF1'"
STATUS = "UNH+1+IFTSTA:D:01B:UN'BGM+23+S1+9'CNI+1+CONS1'STS+1+21'DTM+334:202611201200:203'UNT+6+1'"


def acknowledge(body: str | bytes) -> list[Acknowledgment]:
    return edifact.parse(body.encode() if isinstance(body, str) else body, CONTEXT).acknowledgments


def rejection(body: str) -> Acknowledgment:
    with pytest.raises(ParseError) as caught:
        edifact.parse(body.encode(), CONTEXT)
    [acknowledgment] = caught.value.acknowledgments
    return acknowledgment


def segments(body: str) -> list[str]:
    """The CONTRL's segments after its UNA, as written (release characters kept)."""
    assert body.startswith("UNA:+.? '\n")
    return [seg.strip() for seg in re.split(r"(?<!\?)'", body[10:]) if seg.strip()]


def tagged(body: str, tag: str) -> list[str]:
    return [seg for seg in segments(body) if seg.startswith(tag + "+")]


def assert_envelope(body: str) -> None:
    """Counts and control references pair up: UNB/UNZ, UNH/UNT, UNT counting UNH to UNT."""
    found = [re.split(r"(?<!\?)\+", seg) for seg in segments(body)]
    unb, unh, unt, unz = found[0], found[1], found[-2], found[-1]
    assert (unb[0], unh[0], unt[0], unz[0]) == ("UNB", "UNH", "UNT", "UNZ")
    assert unz == ["UNZ", "1", unb[5]]
    assert unt == ["UNT", str(len(found) - 2), unh[1]]


@pytest.mark.parametrize(
    ("name", "uci", "ucm"),
    [
        (
            "orders_d96a.edi",
            "UCI+ORD1500+5412345000013:14+4012345000009:14+7",
            "UCM+ORD1500-1+ORDERS:D:96A:UN:EAN008+7",
        ),
        ("iftsta_d01b.edi", "UCI+IF0042+5412345000013:14+8712345000005:14+7", "UCM+1+IFTSTA:D:01B:UN+7"),
    ],
)
def test_an_interchange_read_whole_is_acknowledged_with_each_message(name, uci, ucm):
    [acknowledgment] = acknowledge((DOCUMENTS / name).read_bytes())

    assert (acknowledgment.format, acknowledgment.status) == ("edifact", "accepted")
    found = segments(acknowledgment.body)
    assert found[1] == "UNH+1+CONTRL:D:3:UN"
    assert found[2:4] == [uci, ucm]
    assert_envelope(acknowledgment.body)


def test_the_contrl_comes_from_our_unb_identity_to_the_sender_in_the_interchange_syntax(settings):
    settings.EDIFACT_SENDER_ID, settings.EDIFACT_SENDER_QUALIFIER = "5400000000001", "14"

    [acknowledgment] = acknowledge((DOCUMENTS / "iftsta_d01b.edi").read_bytes())

    unb = segments(acknowledgment.body)[0]
    assert unb == f"UNB+UNOC:3+5400000000001:14+5412345000013:14+261120:0930+{acknowledgment.control_number}"


def test_service_characters_in_echoed_and_own_values_are_released(settings):
    settings.EDIFACT_SENDER_ID = "CT+HUB:1"
    body = "UNB+UNOA:3+O?'NEIL?+CO:ZZ+RECEIVER:ZZ+261120:1000+R?:7'" + STATUS + "UNZ+1+R?:7'"

    [acknowledgment] = acknowledge(body)

    unb, _unh, uci, _ucm = segments(acknowledgment.body)[:4]
    assert unb.startswith("UNB+UNOA:3+CT?+HUB?:1:ZZZ+O?'NEIL?+CO:ZZ+")
    assert uci == "UCI+R?:7+O?'NEIL?+CO:ZZ+RECEIVER:ZZ+7"
    assert_envelope(acknowledgment.body)


def test_a_replayed_interchange_gets_the_same_contrl_and_each_interchange_its_own():
    body = UNB + STATUS + "UNZ+1+REF1'" + UNB.replace("REF1", "REF2") + STATUS + "UNZ+1+REF2'"

    first, second = acknowledge(body)

    assert tagged(first.body, "UCI")[0].startswith("UCI+REF1+")
    assert tagged(second.body, "UCI")[0].startswith("UCI+REF2+")
    assert first.control_number != second.control_number
    assert [ack.body for ack in acknowledge(body)] == [first.body, second.body]


def test_a_value_that_cannot_be_read_is_named_by_segment_and_element():
    body = (
        UNB
        + "UNH+1+IFTSTA:D:01B:UN'BGM+23+S1+9'CNI+1+CONS1'STS+1+21'DTM+334:2026112X1200:203'"
        + "STS+1+13'DTM+334:202611201000:203'UNT+8+1'UNZ+1+REF1'"
    )

    [acknowledgment] = acknowledge(body)

    assert acknowledgment.status == "accepted_with_errors"
    assert tagged(acknowledgment.body, "UCM") == ["UCM+1+IFTSTA:D:01B:UN+7"]
    assert tagged(acknowledgment.body, "UCS") == ["UCS+5"]
    assert tagged(acknowledgment.body, "UCD") == ["UCD+12+1:2"]
    assert_envelope(acknowledgment.body)


def test_letters_in_a_quantity_are_an_invalid_type_of_characters():
    orders = (DOCUMENTS / "orders_d96a.edi").read_text().replace("QTY+21:10:KGM", "QTY+21:1O:KGM")

    [acknowledgment] = acknowledge(orders)

    assert acknowledgment.status == "accepted_with_errors"
    assert tagged(acknowledgment.body, "UCS") == ["UCS+17"]  # UNH is 1, the second QTY 17
    assert tagged(acknowledgment.body, "UCD") == ["UCD+37+1:2"]


def test_trailer_counts_and_references_that_do_not_pair_are_reported_on_the_trailer():
    body = UNB + STATUS.replace("UNT+6+1", "UNT+9+1") + "UNZ+3+OTHER'"

    [acknowledgment] = acknowledge(body)

    assert acknowledgment.status == "accepted_with_errors"
    assert tagged(acknowledgment.body, "UCI") == ["UCI+REF1+SENDER:ZZ+RECEIVER:ZZ+7+29+UNZ+1"]
    assert tagged(acknowledgment.body, "UCM") == ["UCM+1+IFTSTA:D:01B:UN+7+29+UNT+1"]


def test_a_message_type_not_read_is_rejected_and_the_others_acknowledged():
    delfor = "UNH+2+DELFOR:D:96A:UN'BGM+241+D1+9'UNT+3+2'"

    [acknowledgment] = acknowledge(UNB + STATUS + delfor + "UNZ+2+REF1'")
    [alone] = acknowledge(UNB + delfor + "UNZ+1+REF1'")

    assert acknowledgment.status == "accepted_with_errors"
    assert tagged(acknowledgment.body, "UCI") == ["UCI+REF1+SENDER:ZZ+RECEIVER:ZZ+7"]
    assert tagged(acknowledgment.body, "UCM") == [
        "UCM+1+IFTSTA:D:01B:UN+7",
        "UCM+2+DELFOR:D:96A:UN+4+14+UNH+2:1",
    ]
    assert alone.status == "rejected"
    assert tagged(alone.body, "UCI") == ["UCI+REF1+SENDER:ZZ+RECEIVER:ZZ+4"]


def test_a_group_is_answered_with_its_messages_under_it():
    [acknowledgment] = acknowledge((DOCUMENTS / "desadv_ung_one_line.edi").read_bytes())

    assert [seg[:3] for seg in segments(acknowledgment.body)[2:-2]] == ["UCI", "UCF", "UCM"]
    assert tagged(acknowledgment.body, "UCF") == ["UCF+G77+WMS-EAST:ZZ+CT-HUB:ZZ+7"]


def test_syntax_version_4_gets_the_version_4_contrl_with_a_four_digit_year():
    body = UNB.replace("UNOA:3", "UNOC:4").replace("261120", "20261120") + STATUS + "UNZ+1+REF1'"

    [acknowledgment] = acknowledge(body)

    unb, unh = segments(acknowledgment.body)[:2]
    assert unb.split("+")[1] == "UNOC:4"
    assert unb.split("+")[4] == "20261120:0930"
    assert unh == "UNH+1+CONTRL:4:1:UN"


def test_a_contrl_is_not_answered_with_a_contrl():
    contrl = "UNH+9+CONTRL:D:3:UN'UCI+OURS1+RECEIVER:ZZ+SENDER:ZZ+7'UNT+3+9'"

    assert acknowledge(UNB + contrl + "UNZ+1+REF1'") == []


def test_a_segment_that_is_not_one_rejects_the_interchange_naming_the_message_and_segment():
    body = UNB + STATUS.replace("CNI+1+CONS1'", "CNI+1+CONS1'%% lost line %%'").replace("UNT+6", "UNT+7")

    acknowledgment = rejection(body + "UNZ+1+REF1'")

    assert acknowledgment.status == "rejected"
    assert tagged(acknowledgment.body, "UCI") == ["UCI+REF1+SENDER:ZZ+RECEIVER:ZZ+4"]
    assert tagged(acknowledgment.body, "UCM") == ["UCM+1+IFTSTA:D:01B:UN+4"]
    assert tagged(acknowledgment.body, "UCS") == ["UCS+4+15"]
    assert_envelope(acknowledgment.body)


def test_a_stray_release_character_is_an_invalid_character_in_its_element():
    acknowledgment = rejection(UNB + "UNH+1+IFTSTA:D:01B:UN'BGM+23+S1?")

    assert tagged(acknowledgment.body, "UCM") == ["UCM+1+IFTSTA:D:01B:UN+4+13+UNT"]
    assert tagged(acknowledgment.body, "UCS") == ["UCS+2"]
    assert tagged(acknowledgment.body, "UCD") == ["UCD+21+2"]


def test_garbage_after_a_readable_unb_is_rejected():
    acknowledgment = rejection(UNB + "this is not EDIFACT at all")

    assert acknowledgment.status == "rejected"
    assert tagged(acknowledgment.body, "UCI") == ["UCI+REF1+SENDER:ZZ+RECEIVER:ZZ+4+33"]
    assert tagged(acknowledgment.body, "UCM") == []
    assert_envelope(acknowledgment.body)


def test_a_truncated_interchange_is_rejected_for_its_missing_trailers():
    acknowledgment = rejection(UNB + "UNH+1+IFTSTA:D:01B:UN'BGM+23+S1+9'CNI+1+CONS1'")

    assert tagged(acknowledgment.body, "UCI") == ["UCI+REF1+SENDER:ZZ+RECEIVER:ZZ+4+13+UNZ"]
    assert tagged(acknowledgment.body, "UCM") == ["UCM+1+IFTSTA:D:01B:UN+4+13+UNT"]


@pytest.mark.parametrize(
    "body",
    ["UNB+UNOA:3+SENDER:ZZ+RECEIVER:ZZ'UNH+1", "UNA:+.? 'garbage'", "UNB+UNOA:3++RECEIVER:ZZ+261120:1000+R'x"],
)
def test_without_a_unb_to_answer_to_nothing_is_sent(body):
    with pytest.raises(ParseError) as caught:
        edifact.parse(body.encode(), CONTEXT)

    assert caught.value.acknowledgments == []

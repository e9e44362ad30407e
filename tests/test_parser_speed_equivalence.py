"""The parsers' fast paths read exactly what the slow, general code they stand in for reads.

EDIFACT segments are split with ``str.split`` and regular expressions where pydifact's tokenizer
walks every character; 2379 dates are read by position where ``strptime`` matches patterns. Each
is compared here with the reference on generated input, errors included. X12 event ids hash the
JSON they always hashed.
"""

import json
from datetime import datetime
from pathlib import Path
from unittest.mock import patch

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydifact.control import Characters
from pydifact.exceptions import EDISyntaxError
from pydifact.parser import Parser
from pydifact.tokenizer import Tokenizer

from apps.ingest.parsers import ParseContext, ParseError, edifact, x12, x12_reader, x12_sets

ADVICES = [":+.? '", "\x1f\x1d.\x00 \x1c", "^*.\\ \n", ":\n.? '"]


def _pydifact(raw: str, characters: Characters) -> tuple[str, object]:
    try:
        tokens = Tokenizer().get_tokens(raw + characters.segment_terminator, characters)
        return "ok", next(iter(Parser().convert_tokens_to_raw_segments(tokens)), [""])
    except EDISyntaxError as exc:
        return "error", str(exc)


@pytest.mark.parametrize("advice", ADVICES, ids=repr)
@settings(max_examples=400, deadline=None)
@given(data=st.data())
def test_segments_split_as_pydifact_splits_them(advice: str, data: st.DataObject):
    characters = Characters.from_str(advice)
    alphabet = [*advice[:2], advice[3], advice[5], "\n", "\r", " ", "A", "1"]
    raw = data.draw(st.lists(st.sampled_from(alphabet), max_size=16).map("".join))
    if (len(raw) - len(raw.rstrip(characters.escape_character))) % 2:
        return  # a segment ending with a release character is refused before it is split
    elements = edifact._elements(raw, characters)
    if elements is not None:  # None: pydifact itself reads it
        assert _pydifact(raw, characters) == ("ok", elements)


@pytest.mark.parametrize("advice", ADVICES, ids=repr)
@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_documents_split_into_segments_as_before(advice: str, data: st.DataObject):
    characters = Characters.from_str(advice)
    text = data.draw(st.lists(st.sampled_from([advice[3], advice[5], "A", "\n"]), max_size=20).map("".join))
    release, terminator = characters.escape_character, characters.segment_terminator
    parts, start, index = [], 0, 0
    while index < len(text):  # the character loop the split replaces
        if text[index] == release:
            index += 2
            continue
        if text[index] == terminator:
            parts.append(text[start:index])
            start = index + 1
        index += 1
    assert edifact._split(text, characters) == (parts, text[start:])


def _strptime(value: str, pattern: str) -> tuple[str, object]:
    try:
        return "ok", datetime.strptime(value, pattern)  # noqa: DTZ007
    except ValueError as exc:
        return "error", str(exc)


@pytest.mark.parametrize("pattern", sorted(edifact._PATTERN_LENGTHS))
@settings(max_examples=500, deadline=None)
@given(data=st.data())
def test_dates_read_as_strptime_reads_them(pattern: str, data: st.DataObject):
    length = edifact._PATTERN_LENGTHS[pattern]
    digits = st.text("0123456789", min_size=length, max_size=length)
    odd = st.text("0123456789 +a\u0661", min_size=length - 2, max_size=length + 2)
    value = data.draw(st.one_of(digits, odd))
    try:
        found = "ok", edifact._strptime(value, pattern)
    except ValueError as exc:
        found = "error", str(exc)
    assert found == _strptime(value, pattern)


@pytest.mark.parametrize("timeless", [False, True])
@pytest.mark.parametrize(
    "name", ["214_pipe_lines.edi", "810_invoice.edi", "856_sopi.edi", "850_940_945_multi_version.edi"]
)
def test_x12_ids_hash_the_json_they_always_hashed(name: str, timeless: bool):
    """Event ids hash ``json.dumps(content, sort_keys=True)``; the references' JSON form is now
    dumped once per set of references and put back in its place."""
    body = (Path(__file__).parent.parent / "apps/ingest/tests/documents/x12" / name).read_bytes()
    events = x12.parse(body, ParseContext(partner="P")).events
    assert events
    for event in events:
        content = event.model_dump(mode="json", exclude={"event_id", "raw", "source"})
        if timeless:
            content.pop("occurred_at")
        references = [ref.model_dump(mode="json") for ref in event.references]
        assert x12_sets._content_json(event, references, timeless_id=timeless) == json.dumps(content, sort_keys=True)


def _read(text: str) -> object:
    try:
        interchanges, notes = x12_reader.read_interchanges(text)
    except ParseError as exc:
        return str(exc)
    return notes, [
        (
            interchange.header.elements,
            interchange.last.number if interchange.last else None,
            interchange.stray,
            [
                (
                    group.header and group.header.elements,
                    [[(s.number, s.elements) for s in tx.segments] for tx in group.sets],
                )
                for group in interchange.groups
            ],
        )
        for interchange in interchanges
    ]


ISA = "ISA*00*          *00*          *ZZ*S              *ZZ*R              *261101*0800*U*00401*000000001*0*P*>~"


@settings(max_examples=400, deadline=None)
@given(
    st.lists(
        st.sampled_from(["~", "*", " ", "\t", "\x0b", "GS*QM", "ST*214*1", "K1*A", "SE*2*1", "IEA*1", ISA]), max_size=14
    )
)
def test_x12_lines_without_breaks_are_read_as_before(pieces: list[str]):
    """A document with no line break after the ISA takes a shorter path through the reader."""
    text = ISA + "".join(pieces)
    fast = _read(text)
    with patch.object(x12_reader._Cursor, "unbroken", lambda cursor: False):
        assert _read(text) == fast

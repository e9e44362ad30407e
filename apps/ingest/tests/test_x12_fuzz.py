"""Whatever the bytes, ``parse`` returns a document or raises ParseError, never anything else."""

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apps.ingest.parsers import x12
from apps.ingest.parsers.base import ParsedDocument, ParseError
from apps.ingest.tests.test_x12_support import CONTEXT, LAYOUTS, document

SEEDS = [
    document(name).encode("latin-1")
    for name in ("856_sopi.edi", "214_pipe_lines.edi", "810_invoice.edi", "210_freight.edi")
] + [
    LAYOUTS["wrapped_80"](document("850_940_945_multi_version.edi")).encode("latin-1"),
    LAYOUTS["pipes_and_line_breaks"](document("856_sopi.edi")).encode("latin-1"),
]
# Bytes that matter to the reader: delimiters, line breaks, digits, letters of segment ids.
INTERESTING = st.sampled_from(list(b"*~|'.$\r\n>:^ \t0123456789ASTGEIHLB\x85\xff"))


def parse_or_fail(body: bytes) -> None:
    try:
        result = x12.parse(body, CONTEXT)
    except ParseError:
        return
    assert isinstance(result, ParsedDocument)
    for ack in result.acknowledgments:
        x12.parse(ack.body.encode(), CONTEXT)  # every 997 we write reads back


@st.composite
def mutated(draw) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 6))):
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        operation = draw(st.sampled_from(["flip", "delete", "insert", "truncate", "duplicate"]))
        if operation == "flip":
            data[at] = draw(INTERESTING | st.integers(0, 255))
        elif operation == "delete":
            del data[at : at + draw(st.integers(1, 40))]
        elif operation == "insert":
            data[at:at] = bytes([draw(INTERESTING)])
        elif operation == "truncate":
            del data[at:]
        else:  # duplicate a run of bytes, often whole segments
            length = draw(st.integers(1, 120))
            data[at:at] = data[at : at + length]
    return bytes(data)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=600))
def test_arbitrary_bytes(body):
    parse_or_fail(body)
    x12.sender_ids(body)
    x12.looks_like(body)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_after_an_isa(tail):
    parse_or_fail(SEEDS[0][:106] + tail)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutated_valid_documents(body):
    parse_or_fail(body)
    x12.sender_ids(body)

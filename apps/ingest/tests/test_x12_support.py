"""Builders shared by the X12 tests (this module holds no tests).

Documents are written in the classic layout (``*`` between elements, ``~`` and a line break after
each segment) and then re-laid out the way real partners send them.
"""

from pathlib import Path

from apps.ingest.parsers.base import ParseContext

DOCUMENTS = Path(__file__).parent / "documents" / "x12"
CONTEXT = ParseContext(partner=None, time_zone="America/Chicago")


def document(name: str) -> str:
    return (DOCUMENTS / name).read_text(encoding="latin-1")


def isa(
    *,
    sender: str = "ACMEWMS",
    receiver: str = "CTRLTOWER",
    control: str = "000000101",
    version: str = "00401",
    repetition: str = "U",
    padded: bool = True,
) -> str:
    """An ISA line; ``padded=False`` writes the id fields without their fixed-width padding."""
    width = 15 if padded else 0
    blanks = " " * 10 if padded else ""
    fields = [
        "ISA",
        "00",
        blanks,
        "00",
        blanks,
        "ZZ",
        sender.ljust(width),
        "ZZ",
        receiver.ljust(width),
        "261120",
        "1403",
        repetition,
        version,
        control,
        "0",
        "P",
        ">",
    ]
    return "*".join(fields) + "~\n"


def envelope(
    body: str,
    *,
    functional_id: str = "SH",
    group: str = "101",
    version: str = "004010",
    control: str = "000000101",
    sender: str = "ACMEWMS",
    set_count: int | None = None,
    date: str = "20261120",
) -> str:
    """Wrap set text (ST…SE lines) in ISA/GS … GE/IEA."""
    sets = set_count if set_count is not None else body.count("ST*")
    return (
        isa(sender=sender, control=control, version=version[:5])
        + f"GS*{functional_id}*{sender}*CTRLTOWER*{date}*1403*{group}*X*{version}~\n"
        + body
        + f"GE*{sets}*{group}~\nIEA*1*{control}~\n"
    )


def transaction(set_type: str, lines: list[str], control: str = "0001") -> str:
    """ST, the segments, and an SE with the right count."""
    segments = [f"ST*{set_type}*{control}", *lines, f"SE*{len(lines) + 2}*{control}"]
    return "".join(segment + "~\n" for segment in segments)


# Layouts: each takes the classic text and returns it as some partner would send it.


def one_line(text: str) -> str:
    return text.replace("\n", "")


def crlf(text: str) -> str:
    return text.replace("\n", "\r\n")


def wrapped(text: str, width: int = 80) -> str:
    flat = one_line(text)
    return "\n".join(flat[start : start + width] for start in range(0, len(flat), width)) + "\n"


def indented(text: str) -> str:
    return "".join(("\t" if index % 2 else "    ") + line + "\n" for index, line in enumerate(text.splitlines()))


def pipes_and_line_breaks(text: str) -> str:
    """``|`` between elements and the line break as the only terminator."""
    return text.replace("*", "|").replace("~\n", "\n")


def isa_on_two_lines(text: str) -> str:
    head, rest = text.split("*ZZ*", 1)
    return head + "*\nZZ*" + rest


def trailing_spaces_and_padding(text: str) -> str:
    return text.replace("~\n", "~   \n") + " " * 300 + "\n\n\n"


def two_segments_per_line(text: str) -> str:
    lines = text.splitlines()
    return "".join(line + ("" if index % 2 == 0 else "\n") for index, line in enumerate(lines)) + "\n"


def terminator_dropped_for_a_while(text: str) -> str:
    """Segments 5 to 8 end with a bare line break, two more with a stray ``'``."""
    lines = text.splitlines()
    for index in range(4, 8):
        lines[index] = lines[index].removesuffix("~")
    for index in range(8, 10):
        lines[index] = lines[index].removesuffix("~") + "'"
    return "\n".join(lines) + "\n"


def with_terminator(text: str, terminator: str) -> str:
    return text.replace("~\n", terminator + "\n")


LAYOUTS = {
    "classic": lambda text: text,
    "one_line": one_line,
    "crlf": crlf,
    "wrapped_80": wrapped,
    "wrapped_80_crlf": lambda text: crlf(wrapped(text)),
    "indented": indented,
    "pipes_and_line_breaks": pipes_and_line_breaks,
    "line_breaks_crlf_indented": lambda text: crlf(indented(text.replace("~\n", "\n"))),
    "isa_on_two_lines": isa_on_two_lines,
    "trailing_spaces_and_padding": trailing_spaces_and_padding,
    "two_segments_per_line": two_segments_per_line,
    "terminator_dropped_for_a_while": terminator_dropped_for_a_while,
    "quote_terminator": lambda text: with_terminator(text, "'"),
    "dollar_terminator": lambda text: with_terminator(text, "$"),
    "tilde_element_separator": lambda text: text.replace("~\n", "'\n").replace("*", "~"),
}


def comparable(events) -> list[dict]:
    """Events without their raw text, which changes with the layout."""
    return [{key: value for key, value in event.to_json().items() if key != "raw"} for event in events]

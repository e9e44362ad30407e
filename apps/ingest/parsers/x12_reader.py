"""Reading X12 interchanges into segments and envelopes, whatever the partner did to the layout.

The reader is strict about the structure it needs (an ``ISA`` with sixteen element separators, a
component separator and a segment terminator) and lenient about the rest: line breaks, wrapping,
indentation, padding, missing trailers. It never judges the envelope; :mod:`apps.ingest.parsers.x12`
checks counts and control numbers and reports them.

Segments are numbered from 1 across the whole file, so every message can say "segment 14".
"""

import re
from collections import Counter
from dataclasses import dataclass, field

from apps.ingest.parsers.base import ParseError

BOM = "\ufeff"
LINE_BREAKS = "\r\n"
ISA_ELEMENT_COUNT = 16
_SEGMENT_ID = re.compile(r"[A-Z][A-Z0-9]{1,2}$")
_NON_SPACE = re.compile(r"\S")
# Within the next 40 characters: a segment id, not followed by a letter or digit.
_SEGMENT_START = re.compile(r"[ \t]*[A-Z][A-Z0-9]{1,2}(?![^\W_])")
_LINE_BREAK = re.compile(r"[\r\n]")
_NOT_LAYOUT = re.compile(r"[^ \t\r\n]")  # not \S: a terminator such as 0x85 counts as a space there
# Terminators partners switch to for a few lines; stripped when a line ends with one of them.
_STRAY_TERMINATORS = "~'$"


@dataclass(frozen=True)
class Delimiters:
    element: str = "*"
    component: str = ">"
    segment: str = "~"
    repetition: str | None = None

    @property
    def line_terminated(self) -> bool:
        """True when the line break itself ends a segment (no terminator character)."""
        return self.segment in LINE_BREAKS


class Segment:
    """One segment: its number in the file and its elements, the segment id first.

    A plain class with slots, not a dataclass: a large document holds hundreds of thousands.
    """

    __slots__ = ("number", "elements", "id")

    def __init__(self, number: int, elements: tuple[str, ...]) -> None:
        self.number = number
        self.elements = elements
        self.id = elements[0].strip()

    def get(self, position: int) -> str:
        """Element ``position`` (1-based, as in ``BSN02``) stripped, or "" when absent."""
        return self.elements[position].strip() if 0 < position < len(self.elements) else ""

    def label(self, position: int | None = None) -> str:
        where = f"segment {self.number} ({self.id})"
        return f"{where} element {self.id}{position:02d}" if position is not None else where

    def text(self, delimiters: Delimiters) -> str:
        return delimiters.element.join(self.elements)


@dataclass
class TransactionSet:
    header: Segment
    segments: list[Segment] = field(default_factory=list)  # between ST and SE, exclusive
    trailer: Segment | None = None
    end: Segment | None = None  # the last segment read
    closed_by: Segment | None = None  # what ended a set that has no SE (None: the end of the input)

    @property
    def type(self) -> str:
        return self.header.get(1)

    @property
    def control_number(self) -> str:
        return self.header.get(2)


@dataclass
class Group:
    header: Segment | None  # None when sets arrive without a GS
    sets: list[TransactionSet] = field(default_factory=list)
    trailer: Segment | None = None

    def get(self, position: int) -> str:
        return self.header.get(position) if self.header else ""


@dataclass
class Interchange:
    header: Segment
    delimiters: Delimiters
    groups: list[Group] = field(default_factory=list)
    trailer: Segment | None = None
    last: Segment | None = None
    stray: list[str] = field(default_factory=list)  # segments found outside any set

    @property
    def control_number(self) -> str:
        return self.header.get(13)


def decode(body: bytes) -> str:
    """UTF-8 when it is UTF-8, otherwise latin-1 (which reads any byte, e.g. a 0x85 terminator)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        text = body.decode("latin-1")
    return text.removeprefix(BOM)


def isa_start(text: str, position: int = 0) -> int | None:
    """Where the next interchange starts, skipping whitespace, or None when it is not an ISA."""
    found = _NON_SPACE.search(text, position)
    if found is None:
        return None
    position = found.start()
    if text.startswith("ISA", position) and len(text) > position + 3 and _separator_ok(text[position + 3]):
        return position
    return None


def _separator_ok(char: str) -> bool:
    return not (char.isalnum() or char.isspace())


@dataclass
class _Cursor:
    text: str
    position: int
    segment_number: int
    wrap_widths: dict[str, int | None] = field(default_factory=dict)
    line_break: int = -2  # where the next line break is, -1 when none follows, -2 not looked for yet

    def unbroken(self) -> bool:
        """True when no line break follows the position (looked for once per line break, not once
        per interchange: a file of thousands of interchanges on one line is read in linear time)."""
        if self.line_break == -2 or 0 <= self.line_break < self.position:
            breaks = [found for found in (self.text.find(char, self.position) for char in LINE_BREAKS) if found != -1]
            self.line_break = min(breaks, default=-1)
        return self.line_break == -1


def read_interchanges(text: str) -> tuple[list[Interchange], list[str]]:
    """Every interchange in ``text``, and notes about what was skipped between them.

    Raises :class:`ParseError` when the text does not start with a readable ISA.
    """
    start = isa_start(text)
    if start is None:
        found = text.lstrip()[:20]
        raise ParseError(f"not an X12 interchange: expected 'ISA' at the start, found {found!r}")
    cursor = _Cursor(text, start, 0)
    interchanges: list[Interchange] = []
    notes: list[str] = []
    while True:
        try:
            interchanges.append(_read_interchange(cursor))
        except ParseError as exc:
            if not interchanges:
                raise
            notes.append(f"{exc}; the rest of the file was ignored")
            break
        next_start = isa_start(text, cursor.position)
        if next_start is None:
            rest = text[cursor.position :].strip(" \t\r\n\x00\x1a")
            if rest:
                notes.append(
                    f"after segment {cursor.segment_number}: ignored {len(rest)} characters that are not an "
                    f"interchange (starting {rest[:20]!r})"
                )
            return interchanges, notes
        cursor.position = next_start
    return interchanges, notes


def _read_interchange(cursor: _Cursor) -> Interchange:
    header, delimiters = _read_isa(cursor)
    interchange = Interchange(header=header, delimiters=delimiters, last=header)
    builder = _EnvelopeBuilder(interchange)
    for segment in _segments(cursor, delimiters):
        builder.add(segment)
        interchange.last = segment
        if segment.id == "IEA":
            break
    builder.finish()
    return interchange


def _read_isa(cursor: _Cursor) -> tuple[Segment, Delimiters]:
    """Read the ISA by counting element separators: its fields are often not fixed width.

    Line breaks inside the ISA are dropped (the ISA broken over two lines, or wrapped at 80 columns).
    After the sixteenth separator come the component separator (ISA16) and the segment terminator;
    when only a line break follows ISA16 (with trailing blanks before it or indentation after it, up
    to the next segment id), the line break is the terminator.
    """
    text, position = cursor.text, cursor.position
    cursor.segment_number += 1
    number = cursor.segment_number
    separator = text[position + 3]
    end = _after_separators(text, position, separator)
    if end is not None and not _LINE_BREAK.search(text, position, end):  # one line: no character loop
        chars, count, index = [text[position:end]], ISA_ELEMENT_COUNT, end
    else:
        chars, count, index = [], 0, position
    while count < ISA_ELEMENT_COUNT:
        if index >= len(text):
            raise ParseError(
                f"segment {number} (ISA): expected {ISA_ELEMENT_COUNT} element separators {separator!r}, "
                f"found {count} before the end of the input (truncated ISA)"
            )
        char = text[index]
        if char == separator:
            count += 1
        if char not in LINE_BREAKS:
            chars.append(char)
        index += 1
    index = _skip_line_breaks(text, index)
    if index >= len(text):
        raise ParseError(f"segment {number} (ISA) element ISA16: expected the component separator, found the end")
    component = text[index]
    index += 1
    after_break = _skip_line_breaks(text, index)
    next_segment = _skip_layout(text, index)
    if _LINE_BREAK.search(text, index, next_segment) and (next_segment >= len(text) or text[next_segment].isalpha()):
        terminator = "\n"
        index = next_segment
    elif after_break < len(text):
        terminator = text[after_break]
        index = after_break + 1
    else:
        raise ParseError(f"segment {number} (ISA): expected a segment terminator after ISA16, found the end")
    elements = tuple("".join(chars).split(separator)) + (component,)
    _check_delimiters(number, separator, component, terminator)
    repetition = elements[11].strip()
    delimiters = Delimiters(
        element=separator,
        component=component,
        segment=terminator,
        repetition=repetition if repetition and _separator_ok(repetition) and len(repetition) == 1 else None,
    )
    cursor.position = index
    return Segment(number, elements), delimiters


def _after_separators(text: str, position: int, separator: str) -> int | None:
    """Where the ISA's sixteenth element separator ends, or None when there are fewer."""
    index = position
    for _ in range(ISA_ELEMENT_COUNT):
        found = text.find(separator, index)
        if found == -1:
            return None
        index = found + 1
    return index


def _check_delimiters(number: int, element: str, component: str, terminator: str) -> None:
    if terminator not in LINE_BREAKS and (terminator.isalnum() or terminator == " "):
        raise ParseError(
            f"segment {number} (ISA): expected a segment terminator after ISA16 {component!r}, found {terminator!r}"
        )
    if component.isalnum() or component.isspace():
        raise ParseError(f"segment {number} (ISA) element ISA16: expected a component separator, found {component!r}")
    if len({element, component, terminator}) < 3:
        raise ParseError(
            f"segment {number} (ISA): element separator {element!r}, component separator {component!r} and "
            f"segment terminator {terminator!r} must all differ"
        )


def _skip_line_breaks(text: str, index: int) -> int:
    while index < len(text) and text[index] in LINE_BREAKS:
        index += 1
    return index


def _skip_layout(text: str, index: int) -> int:
    """Past the spaces, tabs and line breaks at ``index``: trailing blanks and indentation."""
    found = _NOT_LAYOUT.search(text, index)
    return found.start() if found else len(text)


def _wrap_width(text: str, terminator: str) -> int | None:
    """The column a hard-wrapped stream breaks at, or None when lines are not wrapped.

    In a wrapped stream nearly every line that does not end with the terminator has the same length
    (the break falls anywhere in a segment); in a file whose terminator went missing for a few
    lines, those lines have any length.
    """
    lines = [line.rstrip("\r") for line in text.split("\n")][:-1]
    lengths = Counter(len(line) for line in lines if line and not line.rstrip(" \t").endswith(terminator))
    if not lengths:
        return None
    width, count = lengths.most_common(1)[0]
    wrapped = count >= 2 and width >= 40 and count >= 0.8 * lengths.total()
    return width if wrapped else None


def _segments(cursor: _Cursor, delimiters: Delimiters):
    """Yield the segments after the ISA until an IEA, the next ISA, or the end of the input."""
    if delimiters.line_terminated:
        yield from _line_segments(cursor, delimiters)
    else:
        yield from _terminated_segments(cursor, delimiters)


def _line_segments(cursor: _Cursor, delimiters: Delimiters):
    text = cursor.text
    while cursor.position < len(text):
        found = _LINE_BREAK.search(text, cursor.position)
        end = found.start() if found else len(text)
        raw = text[cursor.position : end].strip(" \t")
        if raw and _starts_interchange(raw, 0):
            return
        cursor.position = end + 1
        if raw:
            segment = _segment(cursor, raw, delimiters)
            yield segment
            if segment.id == "IEA":
                return


def _terminated_segments(cursor: _Cursor, delimiters: Delimiters):
    """Split on the terminator; a line break is dropped, or ends a segment that lacks its terminator.

    A break right after a terminator is layout. A break in a line of the wrap width is a wrap (the
    stream was cut at 80 columns) and is removed, even inside an element. Otherwise, a break before
    something that looks like a segment id ends a segment whose terminator is missing or changed.

    One pass over the text: the pieces of a segment broken over lines are joined once, when it ends.
    """
    text, terminator = cursor.text, delimiters.segment
    if cursor.unbroken():
        yield from _unbroken_segments(cursor, delimiters)
        return
    width = cursor.wrap_widths.get(terminator, -1)
    if width == -1:
        width = cursor.wrap_widths[terminator] = _wrap_width(text, terminator)
    line_start: int | None = None  # found when the first line break needs it
    parts: list[str] = []  # the segment so far, when it spans line breaks
    blank = empty = True  # nothing but whitespace (blank), or spaces and tabs (empty), so far
    position = cursor.position
    special = re.compile(f"[{re.escape(terminator)}\r\n]")
    for match in special.finditer(text, position):
        start = match.start()
        if start < position:  # before the cursor, or the LF of a CRLF already taken
            continue
        piece = text[position:start]
        trimmed = piece.strip(" \t")
        if blank and trimmed and not trimmed.isspace():
            head = start - len(piece.lstrip())
            if text.startswith("ISA", head) and _starts_interchange(text, head):
                cursor.position = position
                return
            blank = False
        empty = empty and not trimmed
        position = match.end()
        if match.group() == terminator:
            raw = ("".join(parts) + piece).strip(" \t") if parts else trimmed
            parts, blank, empty = [], True, True
            if raw:
                cursor.position = position
                segment = _segment(cursor, raw, delimiters)
                yield segment
                if segment.id == "IEA":
                    return
            continue
        if match.group() == "\r" and text.startswith("\n", position):
            position += 1
        if line_start is None:
            line_start = text.rfind("\n", 0, start) + 1
        line_length, line_start = start - line_start, position
        parts.append(piece)
        if empty or line_length == width or not _looks_like_segment_start(text, position):
            continue
        raw = "".join(parts).strip(" \t")
        parts, blank, empty = [], True, True
        if raw[-1] in _STRAY_TERMINATORS:
            raw = raw[:-1]
        cursor.position = position
        segment = _segment(cursor, raw, delimiters)
        yield segment
        if segment.id == "IEA":
            return
    yield from _last_segment(cursor, delimiters, position, parts, blank=blank)


def _unbroken_segments(cursor: _Cursor, delimiters: Delimiters):
    """What :func:`_terminated_segments` reads when no line break follows: each piece between two
    terminators, without the bookkeeping line breaks need (most files are one long line)."""
    text, terminator, position = cursor.text, delimiters.segment, cursor.position
    while (end := text.find(terminator, position)) != -1:
        piece = text[position:end]
        raw = piece.strip(" \t")
        if raw and not raw.isspace():
            head = end - len(piece.lstrip())
            if text.startswith("ISA", head) and _starts_interchange(text, head):
                cursor.position = position
                return
        position = end + 1
        if raw:
            cursor.position = position
            segment = _segment(cursor, raw, delimiters)
            yield segment
            if segment.id == "IEA":
                return
    yield from _last_segment(cursor, delimiters, position, [], blank=True)


def _last_segment(cursor: _Cursor, delimiters: Delimiters, position: int, parts: list[str], *, blank: bool):
    """What follows the last terminator: the next interchange, or a last segment without one."""
    text = cursor.text
    rest = text[position:]
    if blank and rest.strip():
        head = len(text) - len(rest.lstrip())
        if text.startswith("ISA", head) and _starts_interchange(text, head):
            cursor.position = position
            return
    cursor.position = len(text)
    raw = ("".join(parts) + rest).strip(" \t\r\n\x00\x1a")
    if raw:
        yield _segment(cursor, raw, delimiters)


def _looks_like_segment_start(text: str, position: int) -> bool:
    return _SEGMENT_START.match(text, position, position + 40) is not None


def _starts_interchange(text: str, position: int) -> bool:
    return isa_start(text, position) is not None


def _segment(cursor: _Cursor, raw: str, delimiters: Delimiters) -> Segment:
    cursor.segment_number += 1
    return Segment(cursor.segment_number, tuple(raw.split(delimiters.element)))


def is_segment_id(value: str) -> bool:
    return bool(_SEGMENT_ID.match(value))


class _EnvelopeBuilder:
    """Files segments into groups and sets; trailers are kept as read, checks come later."""

    def __init__(self, interchange: Interchange) -> None:
        self.interchange = interchange
        self.group: Group | None = None
        self.set: TransactionSet | None = None
        self.handlers = {"GS": self._gs, "ST": self._st, "SE": self._se, "GE": self._ge, "IEA": self._iea}

    def add(self, segment: Segment) -> None:
        handler = self.handlers.get(segment.id)
        if handler:
            handler(segment)
        elif self.set is not None:
            self.set.segments.append(segment)
            self.set.end = segment
        else:
            self.interchange.stray.append(segment.label())

    def finish(self, segment: Segment | None = None) -> None:
        self._close_set(segment)
        self.group = None

    def _gs(self, segment: Segment) -> None:
        self.finish(segment)
        self.group = Group(header=segment)
        self.interchange.groups.append(self.group)

    def _st(self, segment: Segment) -> None:
        self._close_set(segment)
        if self.group is None:
            self.group = Group(header=None)
            self.interchange.groups.append(self.group)
        self.set = TransactionSet(header=segment, end=segment)
        self.group.sets.append(self.set)

    def _se(self, segment: Segment) -> None:
        if self.set is None:
            self.interchange.stray.append(segment.label())
            return
        self.set.trailer = segment
        self.set = None

    def _ge(self, segment: Segment) -> None:
        self._close_set(segment)
        if self.group is None or self.group.trailer is not None:
            self.interchange.stray.append(segment.label())
            return
        self.group.trailer = segment
        self.group = None

    def _iea(self, segment: Segment) -> None:
        self.finish(segment)
        self.interchange.trailer = segment

    def _close_set(self, segment: Segment | None) -> None:
        if self.set is not None:
            self.set.closed_by = segment
        self.set = None

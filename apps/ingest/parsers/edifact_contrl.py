"""CONTRL, the UN/EDIFACT syntax and service report: one for each inbound interchange.

The parser (:mod:`apps.ingest.parsers.edifact`) fills an :class:`InterchangeReport` while it
reads an interchange; :func:`acknowledgment` writes it as a CONTRL interchange addressed back to
the sender, from our own UNB identity (``EDIFACT_SENDER_ID`` and ``EDIFACT_SENDER_QUALIFIER``).

Structure (CONTRL D:3:UN, or 4:1:UN when the subject interchange is in syntax version 4)::

    UNA UNB  UNH  UCI  [UCM [UCS [UCD...]]...]  [UCF [UCM [UCS [UCD...]]...]...]  UNT  UNZ

- ``UCI`` names the subject interchange (its UNB 0020, sender S002 and recipient S003), says
  what was done with it (0083: 7 acknowledged, each lower level acknowledged unless rejected
  below; 4 this level and every lower one rejected) and any error in UNA/UNB/UNZ (0085 with the
  service segment tag 0013 and the element S011).
- ``UCF`` names a UNG group (0048, S006, S007) when the interchange has groups; its messages follow.
- ``UCM`` names each message (UNH 0062 and S009) with its action and any error in UNH/UNT.
- ``UCS`` names a segment in error by its position in the message (0096, UNH is 1) and ``UCD``
  the element in error (S011: 0098 position in the segment, the tag being 0, and 0104 the
  component), each with a 0085 syntax error code.

Errors we report (0085): 12 invalid value (a date that cannot be read), 13 missing (no UNT, UNE
or UNZ), 14 value not supported in this position (a message type, document or function we do
not read), 15 not supported in this position (a segment that is not a segment), 21 invalid
character(s), 28 references do not match (UNT/UNE/UNZ against UNH/UNG/UNB), 29 control count
does not match, 32 lower level empty (an interchange without messages), 33 invalid occurrence
outside a message, 37 invalid type of characters (letters in a number), 18 unspecified error.

A message whose values we skipped (a date or quantity that cannot be read) is acknowledged (7)
with the segment and element reported under it: the rest of it was read and applied, as a 997
says ``E``. A message we did not read is rejected (4). Our status for the inbound message:
``accepted`` when nothing is reported, ``accepted_with_errors`` when the interchange is
acknowledged with errors or rejections below it, ``rejected`` when the interchange is (UCI 4).
"""

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from apps.ingest.parsers.base import Acknowledgment, ParseContext

ACKNOWLEDGED, REJECTED = "7", "4"
SERVICE_CHARACTERS = ":+.? '"  # component, element, decimal mark, release, reserved, terminator
DEFAULT_SYNTAX = ["UNOA", "3"]
CONTROL_LIMIT = 999_999_999
CONTRL_3, CONTRL_4 = ["CONTRL", "D", "3", "UN"], ["CONTRL", "4", "1", "UN"]  # S009 by syntax version

# 0085 syntax error codes
INVALID_VALUE = "12"
MISSING = "13"
VALUE_NOT_SUPPORTED = "14"
NOT_SUPPORTED = "15"
UNSPECIFIED = "18"
INVALID_CHARACTERS = "21"
REFERENCES_DO_NOT_MATCH = "28"
COUNT_DOES_NOT_MATCH = "29"
LOWER_LEVEL_EMPTY = "32"
OUTSIDE_MESSAGE = "33"
INVALID_TYPE_OF_CHARACTERS = "37"


@dataclass(frozen=True)
class Fault:
    """One error: its 0085 code, where it is (the segment's position in the message for a UCS,
    else the service segment tag for a UCI/UCF/UCM) and the element and component in error."""

    code: str
    tag: str = ""
    position: int | None = None
    element: int | None = None
    component: int | None = None

    def describe(self) -> str:
        where = f"segment {self.position} ({self.tag})" if self.position else self.tag
        if self.element is not None:
            where += f" element {self.element}" + (f".{self.component}" if self.component else "")
        return f"{where or 'the interchange'}: syntax error {self.code}"


@dataclass
class MessageReport:
    reference: str
    identifier: list[str]  # S009: type, version, release, agency, association assigned code
    group: str | None = None
    rejected: bool = False
    error: Fault | None = None  # in UNH or UNT
    faults: list[Fault] = field(default_factory=list)  # in segments of the message

    @property
    def type(self) -> str:
        return self.identifier[0].upper() if self.identifier else ""

    def add(self, fault: Fault) -> None:
        """A segment in error (at most one error per element, the first met)."""
        if len(self.faults) < 999 and all(
            (known.position, known.element, known.component) != (fault.position, fault.element, fault.component)
            for known in self.faults
        ):
            self.faults.append(fault)

    @property
    def has_errors(self) -> bool:
        return self.rejected or self.error is not None or bool(self.faults)


@dataclass
class GroupReport:
    reference: str
    sender: list[str]
    recipient: list[str]
    error: Fault | None = None


@dataclass
class InterchangeReport:
    """What the CONTRL for one inbound interchange says."""

    reference: str
    syntax: list[str]
    sender: list[str]  # S002: id, qualifier, reverse routing address
    recipient: list[str]  # S003: id, qualifier, routing address
    test: bool = False
    messages: list[MessageReport] = field(default_factory=list)
    groups: list[GroupReport] = field(default_factory=list)
    rejected: bool = False
    error: Fault | None = None

    def fail(self, fault: Fault) -> None:
        """An error in the UNA/UNB/UNZ (UCI carries one: the first)."""
        if self.error is None:
            self.error = fault

    @property
    def due(self) -> bool:
        """A CONTRL is never answered with a CONTRL."""
        return not self.messages or any(message.type != "CONTRL" for message in self.messages)

    @property
    def action(self) -> str:
        if self.rejected or (self.messages and all(message.rejected for message in self.messages)):
            return REJECTED
        return ACKNOWLEDGED

    @property
    def status(self) -> str:
        if self.action == REJECTED:
            return "rejected"
        errors = self.error or any(group.error for group in self.groups)
        if errors or any(message.has_errors for message in self.messages):
            return "accepted_with_errors"
        return "accepted"


def interchange_report(unb_elements: Sequence[str | list[str]]) -> InterchangeReport | None:
    """A report for the interchange opened by a UNB (its elements after the tag); None when the
    UNB has no control reference or sender to answer to."""

    def components(index: int) -> list[str]:
        if index >= len(unb_elements):
            return []
        value = unb_elements[index]
        return [part.strip() for part in (value if isinstance(value, list) else [value])]

    reference, sender = (components(4) or [""])[0], components(1)
    if not reference or not sender or not sender[0]:
        return None
    return InterchangeReport(
        reference=reference,
        syntax=components(0) or DEFAULT_SYNTAX,
        sender=sender[:3],
        recipient=components(2)[:3],
        test=(components(10) or [""])[0] == "1",
    )


# --------------------------------------------------------------------------------------------
# Writing


class EdifactWriter:
    """Segments with the default service characters; the release character goes before each
    service character in a value, and characters that cannot be written are dropped."""

    def __init__(self, characters: str = SERVICE_CHARACTERS) -> None:
        self.component, self.element, _decimal, self.release, _reserved, self.terminator = characters
        self.service = {self.component, self.element, self.release, self.terminator}

    def escape(self, value: str) -> str:
        return "".join((self.release + char if char in self.service else char) for char in value if char.isprintable())

    def segment(self, tag: str, *elements: str | Sequence[str] | None) -> str:
        values = []
        for element in elements:
            parts = [element or ""] if element is None or isinstance(element, str) else list(element)
            while parts and not parts[-1]:
                parts.pop()
            values.append(self.component.join(self.escape(part) for part in parts))
        while values and not values[-1]:
            values.pop()
        return self.element.join([tag, *values]) + self.terminator


def _s011(fault: Fault) -> list[str] | None:
    if fault.element is None:
        return None
    return [str(fault.element), str(fault.component) if fault.component else ""]


def _service_tag(fault: Fault | None) -> str | None:
    return fault.tag if fault and not fault.position else None


def control_reference(report: InterchangeReport) -> str:
    """Our UNB 0020, derived from the subject interchange: a replayed message writes the same CONTRL."""
    seed = "|".join((*report.sender[:2], report.reference))
    return str(int(hashlib.sha256(seed.encode()).hexdigest(), 16) % CONTROL_LIMIT + 1)


def write_contrl(
    report: InterchangeReport, *, sender: tuple[str, str], reference: str, prepared_at: datetime, line_break: str = "\n"
) -> str:
    """The whole CONTRL interchange (UNA to UNZ) for ``report``."""
    writer = EdifactWriter()
    syntax = [report.syntax[0] or DEFAULT_SYNTAX[0], report.syntax[1] if len(report.syntax) > 1 else "3"]
    version_4 = syntax[1] == "4"
    day = prepared_at.strftime("%Y%m%d" if version_4 else "%y%m%d")
    body = [
        writer.segment("UCI", report.reference, report.sender, report.recipient, report.action, *_errors(report.error))
    ]
    for message in (m for m in report.messages if m.group is None):
        body += _message(writer, message)
    for group in report.groups:
        messages = [m for m in report.messages if m.group == group.reference]
        action = REJECTED if messages and all(m.rejected for m in messages) else ACKNOWLEDGED
        body.append(
            writer.segment("UCF", group.reference, group.sender, group.recipient, action, *_errors(group.error))
        )
        for message in messages:
            body += _message(writer, message)
    message_reference = "1"
    segments = [
        writer.segment(
            "UNB",
            syntax,
            list(sender),
            report.sender,
            [day, prepared_at.strftime("%H%M")],
            reference,
            *([None] * 5 + ["1"] if report.test else []),
        ),
        writer.segment(
            "UNH", message_reference, ["CONTRL", "4", "1", "UN"] if version_4 else ["CONTRL", "D", "3", "UN"]
        ),
        *body,
        writer.segment("UNT", str(len(body) + 2), message_reference),
        writer.segment("UNZ", "1", reference),
    ]
    return f"UNA{SERVICE_CHARACTERS}{line_break}" + "".join(segment + line_break for segment in segments)


def _errors(fault: Fault | None) -> list[str | list[str] | None]:
    """0085, 0013 and S011 of a UCI, UCF or UCM."""
    if fault is None:
        return []
    return [fault.code, _service_tag(fault), _s011(fault)]


def _message(writer: EdifactWriter, message: MessageReport) -> list[str]:
    action = REJECTED if message.rejected else ACKNOWLEDGED
    out = [writer.segment("UCM", message.reference, message.identifier[:5], action, *_errors(message.error))]
    by_segment: dict[int, list[Fault]] = {}
    for fault in message.faults:
        by_segment.setdefault(fault.position or 0, []).append(fault)
    for position, faults in sorted(by_segment.items()):
        whole = next((fault for fault in faults if fault.element is None), None)
        out.append(writer.segment("UCS", str(position), whole.code if whole else None))
        out += [writer.segment("UCD", fault.code, _s011(fault)) for fault in faults if fault.element is not None][:99]
    return out


def acknowledgment(report: InterchangeReport, context: ParseContext) -> Acknowledgment:
    """The CONTRL for ``report`` from our UNB identity (settings), dated when the message was received."""
    from django.conf import settings

    reference = control_reference(report)
    body = write_contrl(
        report,
        sender=(settings.EDIFACT_SENDER_ID, settings.EDIFACT_SENDER_QUALIFIER),
        reference=reference,
        prepared_at=context.received_at or datetime.now(UTC),
    )
    return Acknowledgment(format="edifact", body=body, control_number=reference, status=report.status)

"""Writing X12: one interchange with one functional group, and the 997 that acknowledges a group.

The writer builds the envelope (ISA/GS/ST…SE/GE/IEA with counts and control numbers) around
body segments given as lists of element values, so the 997 here and an outbound 810 share it.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from apps.ingest.parsers.x12_reader import Delimiters

DEFAULT_DELIMITERS = Delimiters(element="*", component=">", segment="~", repetition="^")
# ISA11 became the repetition separator in 004020; before it, ISA11 is the standards id "U".
REPETITION_FROM = "00402"
# AK103 (the acknowledged group's version) exists from 005010.
AK103_FROM = "005010"


@dataclass(frozen=True)
class Party:
    qualifier: str
    id: str


@dataclass(frozen=True)
class Envelope:
    """Who sends to whom, under which control number and version (GS08, e.g. 004010 or 005010)."""

    sender: Party
    receiver: Party
    application_sender: str
    application_receiver: str
    control_number: int
    created_at: datetime
    version: str = "004010"
    usage: str = "P"
    delimiters: Delimiters = DEFAULT_DELIMITERS
    line_break: str = "\n"


@dataclass(frozen=True)
class OutboundSet:
    type: str  # ST01, e.g. 810
    body: Sequence[Sequence[str]]  # segments between ST and SE, each [id, element1, …]


class X12Writer:
    """Serialise segments with one set of delimiters, refusing values that contain a delimiter."""

    def __init__(self, delimiters: Delimiters = DEFAULT_DELIMITERS, line_break: str = "\n") -> None:
        self.delimiters = delimiters
        self.line_break = line_break
        self.reserved = {delimiters.element, delimiters.component, delimiters.segment} | (
            {delimiters.repetition} if delimiters.repetition else set()
        )

    def clean(self, value: str) -> str:
        """``value`` without delimiter characters: for echoing a partner's ids back to it."""
        return "".join(char for char in value if char not in self.reserved and char.isprintable())

    def segment(self, elements: Sequence[str]) -> str:
        for value in elements:
            if self.reserved & set(value):
                raise ValueError(f"X12 value {value!r} contains a delimiter")
        while len(elements) > 1 and elements[-1] == "":
            elements = elements[:-1]
        return self.delimiters.element.join(elements) + self.delimiters.segment + self.line_break


def write_interchange(envelope: Envelope, functional_id: str, sets: Sequence[OutboundSet]) -> str:
    """One interchange holding one group (``functional_id``, e.g. FA or IN) of ``sets``."""
    writer = X12Writer(envelope.delimiters, envelope.line_break)
    control = f"{envelope.control_number:09d}"
    out = [_isa(envelope, control)]
    out.append(
        writer.segment(
            [
                "GS",
                functional_id,
                envelope.application_sender,
                envelope.application_receiver,
                envelope.created_at.strftime("%Y%m%d"),
                envelope.created_at.strftime("%H%M"),
                str(envelope.control_number),
                "X",
                envelope.version,
            ]
        )
    )
    for index, outbound in enumerate(sets, start=1):
        number = f"{index:04d}"
        out.append(writer.segment(["ST", outbound.type, number]))
        out.extend(writer.segment(list(body)) for body in outbound.body)
        out.append(writer.segment(["SE", str(len(outbound.body) + 2), number]))
    out.append(writer.segment(["GE", str(len(sets)), str(envelope.control_number)]))
    out.append(writer.segment(["IEA", "1", control]))
    return "".join(out)


def _isa(envelope: Envelope, control: str) -> str:
    delimiters = envelope.delimiters
    isa12 = envelope.version[:5]
    repetition = delimiters.repetition if delimiters.repetition and isa12 >= REPETITION_FROM else "U"
    fields = [
        "ISA",
        "00",
        " " * 10,
        "00",
        " " * 10,
        envelope.sender.qualifier.ljust(2),
        _fixed(envelope.sender.id, 15),
        envelope.receiver.qualifier.ljust(2),
        _fixed(envelope.receiver.id, 15),
        envelope.created_at.strftime("%y%m%d"),
        envelope.created_at.strftime("%H%M"),
        repetition,
        isa12,
        control,
        "0",
        envelope.usage,
        delimiters.component,
    ]
    return delimiters.element.join(fields) + delimiters.segment + envelope.line_break


def _fixed(value: str, width: int) -> str:
    if len(value) > width:
        raise ValueError(f"ISA identifier {value!r} is longer than {width} characters")
    return value.ljust(width)


# 997 ---------------------------------------------------------------------------------------------


@dataclass
class SetAck:
    type: str
    control_number: str
    status: str  # A, E or R
    codes: list[str] = field(default_factory=list)  # AK502… syntax error codes


@dataclass
class GroupAck:
    """What a 997 says about one inbound group."""

    functional_id: str
    control_number: str
    version: str
    sets: list[SetAck]
    included: int  # GE01 as the sender stated it (or the count when unreadable)
    codes: list[str] = field(default_factory=list)  # AK905… group syntax error codes
    errors: bool = False  # envelope errors without a code of their own (interchange level)

    @property
    def status(self) -> str:
        """AK901: A all accepted, E accepted with errors, P partially accepted, R rejected."""
        rejected = sum(ack.status == "R" for ack in self.sets)
        if self.sets and rejected == len(self.sets):
            return "R"
        if rejected:
            return "P"
        if self.codes or self.errors or any(ack.status == "E" for ack in self.sets):
            return "E"
        return "A"

    @property
    def accepted(self) -> int:
        return sum(ack.status != "R" for ack in self.sets)


def ack_997(ack: GroupAck, writer: X12Writer) -> OutboundSet:
    """The 997 body: AK1, an AK2/AK5 per set, AK9 (the partner's values cleaned of our delimiters)."""
    ak1 = ["AK1", writer.clean(ack.functional_id), writer.clean(ack.control_number)]
    if ack.version[:6] >= AK103_FROM:
        ak1.append(writer.clean(ack.version)[:12])
    body: list[list[str]] = [ak1]
    for set_ack in ack.sets:
        body.append(["AK2", writer.clean(set_ack.type), writer.clean(set_ack.control_number)])
        body.append(["AK5", set_ack.status, *set_ack.codes[:5]])
    body.append(["AK9", ack.status, str(ack.included), str(len(ack.sets)), str(ack.accepted), *ack.codes[:5]])
    return OutboundSet(type="997", body=body)

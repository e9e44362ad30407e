"""What every parser returns: canonical events, warnings, and what to send back.

Parsers are pure: bytes and a context in, a :class:`ParsedDocument` out, or :class:`ParseError`
when the document cannot be read at all. They never touch the database; the pipeline
(``apps.ingest.services``) stores, identifies the partner, applies and acknowledges.
"""

import gc
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from apps.timeline.events import CanonicalEvent, EventReference

# Warnings and unsupported parts kept on a message; the rest are counted.
MAX_WARNINGS = 200
# References a document's events may carry in all: one per this many bytes of the document.
BYTES_PER_REFERENCE = 8
MIN_REFERENCES = 2000


class ParseError(ValueError):
    """The document is unreadable or truncated; the message says precisely where and why.

    ``acknowledgments`` are sent back all the same, such as the CONTRL rejecting an EDIFACT
    interchange whose UNB could be read.
    """

    def __init__(self, *args: object, acknowledgments: Iterable["Acknowledgment"] = ()) -> None:
        super().__init__(*args)
        self.acknowledgments = list(acknowledgments)


@dataclass(frozen=True)
class ParseContext:
    """What the pipeline knows before parsing.

    ``partner`` is the sending partner's code when known (authenticated, ``--partner``, or found
    from the document's EDI sender ids); parsers use it to make event ids unique per partner.
    ``mapping`` is the channel's ``mapping_overrides`` (status codes, CSV columns, JSON paths).
    ``time_zone`` is the partner's IANA zone, for local times that carry no zone of their own.
    ``customer`` is the code of the customer an eCommerce shop's channel sends orders for.
    """

    partner: str | None = None
    channel: str | None = None
    time_zone: str = "UTC"
    mapping: dict[str, Any] = field(default_factory=dict)
    received_at: datetime | None = None
    customer: str | None = None


@dataclass
class Acknowledgment:
    """A document to send back to the sender (a 997 for each X12 functional group)."""

    format: str
    body: str
    control_number: str
    status: str  # accepted, accepted_with_errors, rejected


@dataclass
class ParsedDocument:
    events: list[CanonicalEvent] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    unsupported: list[str] = field(default_factory=list)
    unmapped_codes: list[str] = field(default_factory=list)
    acknowledgments: list[Acknowledgment] = field(default_factory=list)


def capped(messages: list[str], limit: int = MAX_WARNINGS) -> list[str]:
    """The first ``limit`` messages and a count of the others: a document with a million bad
    segments gets a readable list, not a million lines."""
    if len(messages) <= limit:
        return messages
    return [*messages[:limit], f"... and {len(messages) - limit:,} more"]


class ReferenceBudget:
    """How many references a document's events may carry in all, in proportion to its size.

    EDI repeats a header's (or a loop's) references on every status or shipment below it, so a
    small document could make a parser build millions: 200 header references over 40,000 one-line
    statuses. Real documents stay far below one reference per eight bytes.
    """

    def __init__(self, size: int) -> None:
        self.limit = max(MIN_REFERENCES, size // BYTES_PER_REFERENCE)
        self.left = self.limit

    def spend(self, count: int) -> None:
        self.left -= count
        if self.left < 0:
            raise ParseError(
                f"the events would carry more than {self.limit:,} references in all (one per "
                f"{BYTES_PER_REFERENCE} bytes of the document): are header or loop references repeated "
                "on thousands of statuses or shipments?"
            )


@contextmanager
def collection_paused() -> Iterator[None]:
    """CPython's automatic garbage collection off while a whole document is read, then back on
    (when it was on: a caller that turned it off keeps it off).

    Reading a 1 MB document builds hundreds of thousands of small objects (segments, events) that
    all live until it is done; the collector, triggered by their number, walks them all again each
    time they have grown by a quarter, which cost a third of the time of a file of tiny X12
    segments. Parsing makes next to no reference cycles, and memory freed by reference counting is
    freed as before; the next collection after the parse finds any cycle it left.

    The switch is per process: another thread parsing or not meanwhile only has its collections
    put off for as long. Streaming readers (``csv_feed.iter_parse``) are not paused, since their
    consumer runs between the items; ``csv_feed.parse``, which keeps them all, is.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def finished(event: CanonicalEvent, **update: Any) -> CanonicalEvent:
    """What ``event.model_copy(update=update)`` returns (the fields replaced, unvalidated, and
    counted as set), for an event just built that nobody else holds: without the copy, made once
    per status of a document of forty thousand."""
    event.__dict__.update(update)
    event.__pydantic_fields_set__.update(update)
    return event


class ReferenceModels:
    """Each distinct reference of a document validated once, as the event model would validate it.

    Thousands of statuses of one document repeat the same few references, and validating them
    again for every event cost more than the rest of building it. An event given the validated
    models accepts them as they are. When one of them does not validate, :meth:`of` returns the
    plain dicts, so that the event's own validation reports the problem exactly as it always did.
    """

    def __init__(self) -> None:
        self.known: dict[tuple[str, str], EventReference | None] = {}

    def of(self, pairs: Iterable[tuple[str, str]]) -> list[EventReference] | list[dict[str, Any]]:
        pairs = list(pairs)
        models = []
        for kind, value in pairs:
            model = self.model(kind, value) if isinstance(kind, str) and isinstance(value, str) else None
            if model is None:
                return [{"kind": kind, "value": value} for kind, value in pairs]
            models.append(model)
        return models

    def model(self, kind: str, value: str) -> EventReference | None:
        key = (kind, value)
        if key not in self.known:
            try:
                self.known[key] = EventReference(kind=kind, value=value)
            except ValidationError:
                self.known[key] = None
        return self.known[key]


def shown(value: str, limit: int = 40) -> str:
    """A value quoted for a message, cut to ``limit`` characters: a bad cell may be 100 KB."""
    return repr(value if len(value) <= limit else value[: limit - 3] + "...")

"""What every parser returns: canonical events, warnings, and what to send back.

Parsers are pure: bytes and a context in, a :class:`ParsedDocument` out, or :class:`ParseError`
when the document cannot be read at all. They never touch the database; the pipeline
(``apps.ingest.services``) stores, identifies the partner, applies and acknowledges.
"""

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from apps.timeline.events import CanonicalEvent


class ParseError(ValueError):
    """The document is unreadable or truncated; the message says precisely where and why."""


@dataclass(frozen=True)
class ParseContext:
    """What the pipeline knows before parsing.

    ``partner`` is the sending partner's code when known (authenticated, ``--partner``, or found
    from the document's EDI sender ids); parsers use it to make event ids unique per partner.
    ``mapping`` is the channel's ``mapping_overrides`` (status codes, CSV columns, JSON paths).
    ``time_zone`` is the partner's IANA zone, for local times that carry no zone of their own.
    """

    partner: str | None = None
    channel: str | None = None
    time_zone: str = "UTC"
    mapping: dict[str, Any] = field(default_factory=dict)
    received_at: datetime | None = None


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

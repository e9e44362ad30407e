"""Tracking updates, from any aggregator or generic feed, turned into canonical carrier events.

Each adapter reads its webhook into :class:`Tracker` objects (a tracking number, a carrier, a
summary status, checkpoints, an estimated delivery) and :class:`TrackingMapper` does the rest the
same way for all of them:

- one event per checkpoint that carries a status, in time order whatever order the payload used;
- the summary status as an event of its own when no checkpoint already reached it;
- ``shipment.eta_updated`` carrying ``estimated_delivery_at``, whose id holds the estimate itself,
  so a resend is a duplicate and a changed estimate is a new event;
- statuses no table knows become ``shipment.status_unmapped`` and are listed in
  ``ParsedDocument.unmapped_codes``; a channel's ``status_codes`` override any default.

Statuses map first onto a small :class:`Milestone` vocabulary shared by every table, then onto
event kinds (:data:`MILESTONE_EVENTS`). The canonical vocabulary has no "returned" or "cancelled"
shipment kind, so those, like exceptions and expired trackings, become ``shipment.delayed`` with
the reason in ``attributes.reason``; ``attributes.milestone`` always keeps the finer meaning.
"""

import hashlib
import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import ValidationError

from apps.ingest.parsers.base import ParseContext, ParsedDocument, ParseError, capped, collection_paused, shown
from apps.timeline.events import CanonicalEvent, EventKind, EventLocation, ReferenceKind, normalize_reference

MAX_RAW = 100_000
# Real payloads nest a dozen levels; deeper ones only exhaust the stack of whatever walks them next.
MAX_JSON_DEPTH = 64
# Unix times above this are in milliseconds (it is 5138 AD in seconds).
MILLISECONDS_FROM = 10**11


class Milestone(StrEnum):
    PRE_TRANSIT = "pre_transit"
    PICKED_UP = "picked_up"
    IN_TRANSIT = "in_transit"
    OUT_FOR_DELIVERY = "out_for_delivery"
    AVAILABLE_FOR_PICKUP = "available_for_pickup"
    ATTEMPTED = "attempted"
    DELIVERED = "delivered"
    EXCEPTION = "exception"
    RETURNED = "returned"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    DAMAGED = "damaged"
    REFUSED = "refused"


MILESTONES = frozenset(Milestone)
EVENT_KINDS = frozenset(EventKind)
K = EventKind
# milestone -> (event kind, reason written to attributes.reason for delays)
MILESTONE_EVENTS: dict[Milestone, tuple[EventKind, str | None]] = {
    Milestone.PRE_TRANSIT: (K.SHIPMENT_TRACKING_ASSIGNED, None),
    Milestone.PICKED_UP: (K.SHIPMENT_PICKED_UP, None),
    Milestone.IN_TRANSIT: (K.SHIPMENT_IN_TRANSIT, None),
    Milestone.OUT_FOR_DELIVERY: (K.SHIPMENT_OUT_FOR_DELIVERY, None),
    # At a pickup point, waiting for the consignee: the last step before delivery.
    Milestone.AVAILABLE_FOR_PICKUP: (K.SHIPMENT_OUT_FOR_DELIVERY, None),
    Milestone.ATTEMPTED: (K.SHIPMENT_DELIVERY_ATTEMPTED, None),
    Milestone.DELIVERED: (K.SHIPMENT_DELIVERED, None),
    Milestone.EXCEPTION: (K.SHIPMENT_DELAYED, "carrier exception"),
    Milestone.RETURNED: (K.SHIPMENT_DELAYED, "returned to sender"),
    Milestone.CANCELLED: (K.SHIPMENT_DELAYED, "shipment cancelled"),
    Milestone.EXPIRED: (K.SHIPMENT_DELAYED, "tracking expired without carrier updates"),
    Milestone.DAMAGED: (K.SHIPMENT_DAMAGED, None),
    Milestone.REFUSED: (K.SHIPMENT_REFUSED, None),
}

M = Milestone
# Default for feeds without a table of their own (CSV, generic JSON): plain words, and the
# common X12 214 AT701 codes for carriers that export those.
GENERIC_STATUSES_SOURCE: dict[str, Milestone] = {
    "pre_transit": M.PRE_TRANSIT,
    "info_received": M.PRE_TRANSIT,
    "information_received": M.PRE_TRANSIT,
    "label_created": M.PRE_TRANSIT,
    "pending": M.PRE_TRANSIT,
    "picked_up": M.PICKED_UP,
    "accepted": M.PICKED_UP,
    "collected": M.PICKED_UP,
    "in_transit": M.IN_TRANSIT,
    "transit": M.IN_TRANSIT,
    "departed": M.IN_TRANSIT,
    "arrived": M.IN_TRANSIT,
    "out_for_delivery": M.OUT_FOR_DELIVERY,
    "available_for_pickup": M.AVAILABLE_FOR_PICKUP,
    "ready_for_pickup": M.AVAILABLE_FOR_PICKUP,
    "attempted": M.ATTEMPTED,
    "delivery_attempted": M.ATTEMPTED,
    "failed_attempt": M.ATTEMPTED,
    "delivered": M.DELIVERED,
    "exception": M.EXCEPTION,
    "delayed": M.EXCEPTION,
    "on_hold": M.EXCEPTION,
    "failure": M.EXCEPTION,
    "returned": M.RETURNED,
    "return_to_sender": M.RETURNED,
    "returned_to_sender": M.RETURNED,
    "cancelled": M.CANCELLED,
    "canceled": M.CANCELLED,
    "expired": M.EXPIRED,
    "damaged": M.DAMAGED,
    "refused": M.REFUSED,
    "AF": M.PICKED_UP,
    "X4": M.IN_TRANSIT,
    "P1": M.IN_TRANSIT,
    "J1": M.IN_TRANSIT,
    "X6": M.OUT_FOR_DELIVERY,
    "AH": M.ATTEMPTED,
    "AP": M.ATTEMPTED,
    "D1": M.DELIVERED,
    "SD": M.EXCEPTION,
    "A9": M.DAMAGED,
    "A7": M.REFUSED,
    "A3": M.RETURNED,
    "CA": M.CANCELLED,
}

_SEPARATORS = re.compile(r"[\s\-/]+")


def code_key(code: str) -> str:
    """How status codes are compared: case, spacing and dashes do not matter."""
    return _SEPARATORS.sub("_", code.strip()).lower()


def status_table(source: Mapping[str, Milestone]) -> dict[str, Milestone]:
    return {code_key(code): milestone for code, milestone in source.items()}


GENERIC_STATUSES = status_table(GENERIC_STATUSES_SOURCE)


# --- reading JSON and values -----------------------------------------------------------------


def load_json(body: bytes) -> Any:
    """The JSON document in ``body``; ParseError naming the line and column when it is not JSON."""
    try:
        text_body = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ParseError(f"byte {exc.start}: the body is not UTF-8 text") from exc
    too_deep = ParseError(f"the JSON is nested more than {MAX_JSON_DEPTH} levels deep")
    try:
        data = json.loads(text_body)
    except json.JSONDecodeError as exc:
        raise ParseError(f"line {exc.lineno}, column {exc.colno}: not valid JSON ({exc.msg})") from exc
    except RecursionError:
        raise too_deep from None
    if _depth(data) > MAX_JSON_DEPTH:
        raise too_deep
    return data


def _depth(data: Any) -> int:
    """How deep objects and lists nest (0 for a scalar), walked with a stack, not recursion, and
    no further than one level past MAX_JSON_DEPTH."""
    deepest, stack = 0, [(data, 1)]
    while stack and deepest <= MAX_JSON_DEPTH:
        value, depth = stack.pop()
        if isinstance(value, dict | list):
            deepest = max(deepest, depth)
            stack.extend((child, depth + 1) for child in (value.values() if isinstance(value, dict) else value))
    return deepest


def quiet_json(body: bytes) -> Any:
    """For detection: the JSON document, or None when ``body`` is not a JSON object or list."""
    if body.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] not in (b"{", b"["):
        return None
    try:
        return load_json(body)
    except ParseError:
        return None


def text(value: Any) -> str:
    """A JSON scalar as stripped text; null, objects and lists read as empty."""
    if isinstance(value, bool) or value is None:
        return ""
    if isinstance(value, str | int | float | Decimal):
        return str(value).strip()
    return ""


def as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def as_list(value: Any) -> list[Any]:
    """A list as is; null, "" and {} (what some APIs send for an empty list) as []; one object as [it]."""
    if isinstance(value, list):
        return value
    if isinstance(value, dict) and value:
        return [value]
    return []


def codes(*values: Any) -> tuple[str, ...]:
    """Status codes, most specific first, without the empty ones."""
    return tuple(code for code in (text(value) for value in values) if code)


def first(*values: Any) -> Any:
    """The first value that is not null or blank."""
    return next((value for value in values if text(value) or isinstance(value, list | tuple)), None)


def without(data: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {key: value for key, value in data.items() if key not in keys}


def raw_text(data: Any) -> str | None:
    """The source fragment as compact JSON, or None when it is too large to keep."""
    raw = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False, separators=(",", ":"), default=str)
    return raw if len(raw) <= MAX_RAW else None


def _decimal(value: Any) -> Decimal | None:
    try:
        number = Decimal(text(value))
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def location(
    *,
    name: Any = None,
    city: Any = None,
    state: Any = None,
    postal_code: Any = None,
    country: Any = None,
    latitude: Any = None,
    longitude: Any = None,
) -> EventLocation | None:
    """A location from whatever parts are present (cut to the canonical lengths); None when empty."""
    parts = {
        "name": text(name)[:200],
        "city": text(city)[:100],
        "state": text(state)[:60],
        "postal_code": text(postal_code)[:20],
        "country": text(country)[:60],
    }
    values: dict[str, Any] = {key: value for key, value in parts.items() if value}
    coordinates = {"latitude": _decimal(latitude), "longitude": _decimal(longitude)}
    values.update({key: value for key, value in coordinates.items() if value is not None})
    return EventLocation(**values) if values else None


# --- times -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class When:
    """A source time made timezone-aware; ``assumed`` when the zone came from the partner's settings."""

    at: datetime
    assumed: bool = False


def zone_of(context: ParseContext) -> ZoneInfo:
    try:
        return ZoneInfo(context.time_zone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ParseError(f"time zone {context.time_zone!r} of the partner is unknown") from exc


def _unix(number: float, zone: ZoneInfo) -> When:
    seconds = number / 1000 if abs(number) >= MILLISECONDS_FROM else number
    return When(datetime.fromtimestamp(seconds, tz=ZoneInfo("UTC")).astimezone(zone))


def read_time(value: Any, zone: ZoneInfo, time_format: str | None = None) -> When:
    """ISO 8601 (with or without offset, date only), unix seconds or milliseconds, a (date, time)
    pair, or ``time_format`` when given. Naive times are taken in ``zone``. ValueError names the value.
    """
    if isinstance(value, When):
        return value
    if isinstance(value, tuple):
        day, clock = (text(part) for part in value)
        return read_time(f"{day}T{clock}" if clock else day, zone, time_format)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return _unix(value, zone)
    raw = text(value)
    try:
        if time_format:
            parsed = datetime.strptime(raw, time_format)  # noqa: DTZ007 - the zone is added below
        elif raw.isdigit() and len(raw) >= 9:
            return _unix(int(raw), zone)
        else:
            parsed = datetime.fromisoformat(raw)
    except (ValueError, OverflowError, OSError):
        raise ValueError(f"{shown(raw)} is not a date") from None
    if parsed.tzinfo is None:
        return When(parsed.replace(tzinfo=zone), assumed=True)
    return When(parsed)


# --- trackers --------------------------------------------------------------------------------


@dataclass
class Checkpoint:
    """One carrier scan. ``time`` is anything :func:`read_time` reads; ``codes`` most specific first."""

    time: Any
    codes: tuple[str, ...] = ()
    message: str = ""
    location: EventLocation | None = None
    sequence: int = 0
    raw: Any = None


@dataclass
class Tracker:
    tracking_number: str
    carrier: str = ""
    codes: tuple[str, ...] = ()
    message: str = ""
    updated_at: Any = None
    estimated_delivery: Any = None
    checkpoints: list[Checkpoint] = field(default_factory=list)
    references: list[tuple[ReferenceKind, str]] = field(default_factory=list)
    raw: Any = None


@dataclass(frozen=True)
class Resolution:
    kind: EventKind
    milestone: Milestone | None
    code: str


def _overrides(source: str, overrides: Mapping[str, Any]) -> dict[str, Milestone | EventKind]:
    """A channel's status codes: each maps to a milestone name or to an event kind."""
    resolved: dict[str, Milestone | EventKind] = {}
    for code, target in overrides.items():
        value = text(target)
        if value in MILESTONES:
            resolved[code_key(str(code))] = Milestone(value)
        elif value in EVENT_KINDS:
            resolved[code_key(str(code))] = EventKind(value)
        else:
            raise ParseError(
                f"{source} status_codes[{code!r}]: {value!r} is neither a milestone "
                f"({', '.join(Milestone)}) nor an event kind"
            )
    return resolved


class TrackingMapper:
    """Turns trackers into canonical events; warnings and unmapped codes go to ``document``."""

    def __init__(
        self,
        source: str,
        statuses: Mapping[str, Milestone],
        context: ParseContext,
        *,
        overrides: Mapping[str, Any] | None = None,
        document: ParsedDocument | None = None,
    ) -> None:
        self.source = source
        self.statuses = statuses
        self.context = context
        self.zone = zone_of(context)
        self.overrides = _overrides(source, overrides or {})
        self.document = document if document is not None else ParsedDocument()
        self.unmapped = set(self.document.unmapped_codes)  # the list's codes, for a quick lookup

    def resolve(self, status_codes: tuple[str, ...]) -> Resolution:
        for code in status_codes:
            key = code_key(code)
            target = self.overrides.get(key) or self.statuses.get(key)
            if isinstance(target, Milestone):
                return Resolution(MILESTONE_EVENTS[target][0], target, code)
            if isinstance(target, EventKind):
                return Resolution(target, None, code)
        code = status_codes[0]
        if code not in self.unmapped:
            self.unmapped.add(code)
            self.document.unmapped_codes.append(code)
        return Resolution(K.SHIPMENT_STATUS_UNMAPPED, None, code)

    def events(self, tracker: Tracker) -> list[CanonicalEvent]:
        number = tracker.tracking_number
        if not normalize_reference(number) or len(number) > 100:
            self.document.warnings.append(f"{self.source}: a tracker without a usable tracking number was skipped")
            return []
        try:
            return self._events(tracker)
        except ValidationError as exc:
            problem = exc.errors()[0]
            where = ".".join(str(part) for part in problem["loc"])
            self.document.warnings.append(f"tracker {number}: {where}: {problem['msg']}; skipped")
            return []

    def _events(self, tracker: Tracker) -> list[CanonicalEvent]:
        timed = self._timed_checkpoints(tracker)
        events = [self._checkpoint_event(tracker, when, checkpoint) for when, checkpoint in timed if checkpoint.codes]
        latest = self._when(tracker, tracker.updated_at, "updated_at") or (timed[-1][0] if timed else None)
        latest = latest or self._received()
        if tracker.codes:
            resolution = self.resolve(tracker.codes)
            if not any(_same_status(event, resolution) for event in events):
                events.extend(self._summary_event(tracker, resolution, latest))
        eta = self._when(tracker, tracker.estimated_delivery, "estimated delivery")
        if eta is not None:
            events.extend(self._eta_event(tracker, eta, latest))
        return events

    def _timed_checkpoints(self, tracker: Tracker) -> list[tuple[When, Checkpoint]]:
        """Checkpoints with a readable time, oldest first (payloads do not keep any order)."""
        timed = []
        for checkpoint in tracker.checkpoints:
            when = self._when(tracker, checkpoint.time, "checkpoint time")
            if when is not None:
                timed.append((when, checkpoint))
        silent = sum(1 for checkpoint in tracker.checkpoints if not checkpoint.codes)
        if silent:
            self.document.warnings.append(
                f"tracker {tracker.tracking_number}: {silent} checkpoint(s) carry no status; "
                "only the summary status was used for them"
            )
        return sorted(timed, key=lambda scan: (scan[0].at, scan[1].sequence))

    def _when(self, tracker: Tracker, value: Any, what: str) -> When | None:
        if value is None or (not isinstance(value, tuple | When) and not text(value)):
            return None
        try:
            return read_time(value, self.zone)
        except ValueError as exc:
            self.document.warnings.append(f"tracker {tracker.tracking_number}: {what} {exc}; ignored")
            return None

    def _received(self) -> When | None:
        received = self.context.received_at
        if received is None:
            return None
        return When(received if received.tzinfo else received.replace(tzinfo=self.zone))

    def _checkpoint_event(self, tracker: Tracker, when: When, checkpoint: Checkpoint) -> CanonicalEvent:
        resolution = self.resolve(checkpoint.codes)
        key = ("checkpoint", when.at.isoformat(), "|".join(checkpoint.codes), checkpoint.message)
        return self._event(
            tracker,
            resolution,
            when,
            key,
            message=checkpoint.message,
            place=checkpoint.location,
            raw=checkpoint.raw,
        )

    def _summary_event(self, tracker: Tracker, resolution: Resolution, when: When | None) -> list[CanonicalEvent]:
        if when is None:
            self.document.warnings.append(
                f"tracker {tracker.tracking_number}: status {shown(resolution.code)} has no time; skipped"
            )
            return []
        key = ("status", "|".join(tracker.codes))
        return [self._event(tracker, resolution, when, key, message=tracker.message, raw=tracker.raw)]

    def _eta_event(self, tracker: Tracker, eta: When, when: When | None) -> list[CanonicalEvent]:
        if when is None:
            self.document.warnings.append(f"tracker {tracker.tracking_number}: estimated delivery has no time; skipped")
            return []
        resolution = Resolution(K.SHIPMENT_ETA_UPDATED, None, "")
        key = ("eta", eta.at.isoformat())
        return [self._event(tracker, resolution, when, key, raw=tracker.raw, eta=eta)]

    def _event(
        self,
        tracker: Tracker,
        resolution: Resolution,
        when: When,
        key: tuple[str, ...],
        *,
        message: str = "",
        place: EventLocation | None = None,
        raw: Any = None,
        eta: When | None = None,
    ) -> CanonicalEvent:
        attributes: dict[str, Any] = {
            "carrier": tracker.carrier or None,
            "status_code": resolution.code or None,
            "milestone": resolution.milestone.value if resolution.milestone else None,
            "message": message or None,
            "feed": self.source,
        }
        if resolution.kind == K.SHIPMENT_DELAYED:
            default = MILESTONE_EVENTS[resolution.milestone][1] if resolution.milestone else None
            attributes["reason"] = message or default or resolution.code
        if when.assumed or (eta is not None and eta.assumed):
            attributes["time_zone_assumed"] = True
        return CanonicalEvent(
            event_id=self.event_id(tracker.tracking_number, *key),
            kind=resolution.kind,
            occurred_at=when.at,
            references=[
                {"kind": ReferenceKind.TRACKING, "value": tracker.tracking_number},
                *({"kind": kind, "value": value} for kind, value in tracker.references if normalize_reference(value)),
            ],
            location=place,
            estimated_delivery_at=eta.at if eta else None,
            attributes={name: value for name, value in attributes.items() if value is not None},
            raw=raw_text(raw) if raw is not None else None,
        )

    def event_id(self, tracking_number: str, *parts: str) -> str:
        """Deterministic from the partner, the feed and the business content: a resend is a duplicate."""
        return event_id(self.source, self.context.partner, normalize_reference(tracking_number)[:60], *parts)


def _same_status(event: CanonicalEvent, resolution: Resolution) -> bool:
    """A checkpoint already reached the summary status (unmapped ones compare by their code)."""
    if resolution.kind == K.SHIPMENT_STATUS_UNMAPPED:
        return event.attributes.get("status_code") == resolution.code
    return event.kind == resolution.kind


def event_id(prefix: str, partner: str | None, label: str, *parts: str) -> str:
    digest = hashlib.sha256("\x1f".join([partner or "", prefix, label, *parts]).encode()).hexdigest()[:20]
    return f"{prefix}-{label}-{digest}" if label else f"{prefix}-{digest}"


# --- adapters --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Adapter:
    """One aggregator: its status table, how to recognise one webhook body and read its trackers.

    A body may also be a JSON list of such webhook bodies (a batch); every item must match.
    Channels override statuses with ``mapping["status_codes"]`` (code -> milestone or event kind).
    """

    name: str
    statuses: dict[str, Milestone]
    matches: Callable[[dict[str, Any]], bool]
    read: Callable[[dict[str, Any]], Iterator[Tracker]]

    def accepts(self, data: Any) -> bool:
        items = data if isinstance(data, list) else [data]
        return bool(items) and all(isinstance(item, dict) and self.matches(item) for item in items)

    def looks_like(self, body: bytes) -> bool:
        data = quiet_json(body)
        return data is not None and self.accepts(data)

    @collection_paused()
    def parse(self, body: bytes, context: ParseContext) -> ParsedDocument:
        data = load_json(body)
        if not self.accepts(data):
            raise ParseError(f"not a {self.name} tracking webhook (or a list of them)")
        mapper = TrackingMapper(self.name, self.statuses, context, overrides=context.mapping.get("status_codes"))
        trackers = 0
        for item in data if isinstance(data, list) else [data]:
            for tracker in self.read(item):
                trackers += 1
                mapper.document.events.extend(mapper.events(tracker))
        if not trackers:
            raise ParseError(f"the {self.name} webhook holds no tracker")
        mapper.document.warnings = capped(mapper.document.warnings)
        return mapper.document

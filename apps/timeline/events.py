"""Canonical events: the closed vocabulary every feed is normalised into (schema version 1).

Parsers produce :class:`CanonicalEvent`; ``apply_events`` consumes them. The JSON form is the one
documented in DESIGN.md and accepted by ``POST /api/v1/events/``.
"""

import re
from decimal import Decimal
from enum import StrEnum
from typing import Any, Literal, NamedTuple

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

SCHEMA_VERSION = 1
# Validation context: the caller knows no text of the event can hold a NUL character.
NUL_FREE = "nul_free"


class EventKind(StrEnum):
    ORDER_CREATED = "order.created"
    ORDER_RELEASED = "order.released"
    ORDER_ALLOCATED = "order.allocated"
    ORDER_PICKED = "order.picked"
    ORDER_PACKED = "order.packed"
    ORDER_CANCELLED = "order.cancelled"
    SHIPMENT_MANIFESTED = "shipment.manifested"
    SHIPMENT_TRACKING_ASSIGNED = "shipment.tracking_assigned"
    SHIPMENT_PICKED_UP = "shipment.picked_up"
    SHIPMENT_IN_TRANSIT = "shipment.in_transit"
    SHIPMENT_OUT_FOR_DELIVERY = "shipment.out_for_delivery"
    SHIPMENT_ETA_UPDATED = "shipment.eta_updated"
    SHIPMENT_DELAYED = "shipment.delayed"
    SHIPMENT_DELIVERY_ATTEMPTED = "shipment.delivery_attempted"
    SHIPMENT_DELIVERED = "shipment.delivered"
    SHIPMENT_POD_RECEIVED = "shipment.pod_received"
    SHIPMENT_DAMAGED = "shipment.damaged"
    SHIPMENT_REFUSED = "shipment.refused"
    # A carrier status no mapping table knows: kept visible with its raw code, never guessed.
    SHIPMENT_STATUS_UNMAPPED = "shipment.status_unmapped"
    FREIGHT_CHARGE_POSTED = "freight.charge_posted"
    FREIGHT_CHARGE_VALIDATED = "freight.charge_validated"
    FREIGHT_CHARGE_DISPUTED = "freight.charge_disputed"
    FREIGHT_CHARGE_SETTLED = "freight.charge_settled"
    INVOICE_GENERATED = "invoice.generated"
    INVOICE_HELD = "invoice.held"
    INVOICE_RELEASED = "invoice.released"
    INVOICE_POSTED = "invoice.posted"
    RETURN_AUTHORIZED = "return.authorized"
    RETURN_RECEIVED = "return.received"
    INVENTORY_SNAPSHOT = "inventory.snapshot"
    INVENTORY_ADJUSTED = "inventory.adjusted"

    @property
    def family(self) -> str:
        return self.value.split(".", 1)[0]


class ReferenceKind(StrEnum):
    ORDER = "order"
    PO = "po"
    SHIPMENT = "shipment"
    TRACKING = "tracking"
    BOL = "bol"
    PRO = "pro"
    INVOICE = "invoice"
    RMA = "rma"
    ASN = "asn"
    CONTAINER = "container"


ORDER_REFERENCE_KINDS = frozenset({ReferenceKind.ORDER, ReferenceKind.PO, ReferenceKind.INVOICE, ReferenceKind.RMA})
SHIPMENT_REFERENCE_KINDS = frozenset(ReferenceKind) - ORDER_REFERENCE_KINDS
# When an event's references point at different orders, the strongest kind decides.
ORDER_REFERENCE_STRENGTH = (ReferenceKind.ORDER, ReferenceKind.PO, ReferenceKind.INVOICE, ReferenceKind.RMA)
SHIPMENT_REFERENCE_STRENGTH = (
    ReferenceKind.SHIPMENT,
    ReferenceKind.ASN,
    ReferenceKind.TRACKING,
    ReferenceKind.PRO,
    ReferenceKind.BOL,
    ReferenceKind.CONTAINER,
)

_SPACES = re.compile(r"\s+")


def normalize_reference(value: str) -> str:
    """References match whatever the case and spacing a partner used ("1z 999 aa1" = "1Z999AA1")."""
    return _SPACES.sub("", value).upper()


EARLIEST_YEAR, LATEST_YEAR = 1900, 2199  # the times an event may carry


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class EventReference(_Strict):
    kind: ReferenceKind
    value: str = Field(min_length=1, max_length=100)

    @field_validator("value")
    @classmethod
    def _normalise(cls, value: str) -> str:
        normalised = normalize_reference(value)
        if not normalised:
            raise ValueError("reference value is blank")
        return normalised


class EventLine(_Strict):
    sku: str = Field(min_length=1, max_length=100)
    quantity: Decimal = Field(max_digits=14, decimal_places=3)
    uom: str = Field(default="EA", max_length=10)
    unit_price: Decimal | None = Field(default=None, max_digits=14, decimal_places=4)
    line_number: str | None = Field(default=None, max_length=20)
    order: str | None = Field(
        default=None, max_length=100, description="On consolidated shipments: the order or PO this line belongs to."
    )

    @field_validator("order")
    @classmethod
    def _normalise_order(cls, value: str | None) -> str | None:
        return normalize_reference(value) if value else None


class EventLocation(_Strict):
    name: str | None = Field(default=None, max_length=200)
    city: str | None = Field(default=None, max_length=100)
    state: str | None = Field(default=None, max_length=60)
    postal_code: str | None = Field(default=None, max_length=20)
    country: str | None = Field(default=None, max_length=60)
    latitude: Decimal | None = None
    longitude: Decimal | None = None


class OrderInfo(_Strict):
    customer: str | None = Field(default=None, max_length=40, description="Customer partner code.")
    promised_at: AwareDatetime | None = None
    region: str | None = Field(default=None, max_length=60)


class EventSource(_Strict):
    """Who said it. Set by the receiver from the authenticated partner, never from the body."""

    partner: str | None = None
    channel: str | None = None
    message: int | None = None
    # What the sender's token and channel allow (apps.partners.scopes); None: its kind's defaults.
    scopes: tuple[str, ...] | None = None


def _holds_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_holds_nul(key) or _holds_nul(item) for key, item in value.items())
    if isinstance(value, list | tuple):
        return any(_holds_nul(item) for item in value)
    if isinstance(value, BaseModel):
        return _holds_nul(value.__dict__)
    return False


class EventKey(NamedTuple):
    """An event's identity: its id is unique per source partner, not across partners, so no
    partner can claim another's (predictable) ids. ``partner`` is "" for our own events."""

    partner: str
    event_id: str

    def __str__(self) -> str:
        return f"{self.event_id} from {self.partner}" if self.partner else self.event_id


class CanonicalEvent(_Strict):
    event_id: str = Field(min_length=1, max_length=200)
    kind: EventKind
    schema_version: Literal[1] = SCHEMA_VERSION
    occurred_at: AwareDatetime
    source: EventSource = Field(default_factory=EventSource)
    references: list[EventReference] = Field(default_factory=list, max_length=200)
    # A ship notice for a full truck of small parcels runs to thousands of lines.
    lines: list[EventLine] = Field(default_factory=list, max_length=20_000)
    location: EventLocation | None = None
    amount: Decimal | None = Field(default=None, max_digits=16, decimal_places=4)
    currency: str | None = Field(default=None, min_length=3, max_length=3)
    order: OrderInfo | None = None
    estimated_delivery_at: AwareDatetime | None = None
    attributes: dict[str, Any] = Field(default_factory=dict)
    raw: str | None = Field(default=None, max_length=100_000, description="The source fragment it came from.")

    @field_validator("currency")
    @classmethod
    def _upper_currency(cls, value: str | None) -> str | None:
        return value.upper() if value else value

    @model_validator(mode="after")
    def _needs_references(self) -> "CanonicalEvent":
        if self.kind.family != "inventory" and not self.references:
            raise ValueError(f"a {self.kind.value} event needs at least one reference")
        return self

    @model_validator(mode="after")
    def _storable(self, info: ValidationInfo) -> "CanonicalEvent":
        """Only what the database can hold: PostgreSQL refuses a NUL character in any text, and a
        time in year 1 ahead of UTC falls before the first instant a timestamp can hold."""
        promised = self.order.promised_at if self.order else None
        for moment in (self.occurred_at, self.estimated_delivery_at, promised):
            if moment and not EARLIEST_YEAR <= moment.year <= LATEST_YEAR:
                raise ValueError(f"{moment.isoformat()} is not between {EARLIEST_YEAR} and {LATEST_YEAR}")
        nul_free = bool(info.context and info.context.get(NUL_FREE))
        if not nul_free and _holds_nul(self.__dict__):
            raise ValueError("a text holds a NUL character (\\u0000), which cannot be stored")
        return self

    @property
    def key(self) -> EventKey:
        return EventKey(self.source.partner or "", self.event_id)

    def references_of(self, kinds: frozenset[ReferenceKind]) -> list[EventReference]:
        return [ref for ref in self.references if ref.kind in kinds]

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)


class EventValidationError(ValueError):
    """Raised with one human-readable line per problem, each naming the field (``events[2].kind``)."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


def _field_path(prefix: str, loc: tuple[Any, ...]) -> str:
    path = prefix
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "event"


def _problems(error: ValidationError, prefix: str) -> list[str]:
    return [f"{_field_path(prefix, tuple(item['loc']))}: {item['msg']}" for item in error.errors()]


def parse_event(
    data: Any, *, source: EventSource | None = None, prefix: str = "", nul_free: bool = False
) -> CanonicalEvent:
    """``nul_free``: the caller has seen that no text in ``data`` can hold a NUL character (the
    JSON it came from has no ``\\u0000``), which spares walking every value again."""
    if not isinstance(data, dict):
        raise EventValidationError([f"{prefix or 'event'}: expected a JSON object"])
    body = {key: value for key, value in data.items() if key != "source"}
    if source is not None:
        body["source"] = source
    try:
        return CanonicalEvent.model_validate(body, context={NUL_FREE: True} if nul_free else None)
    except ValidationError as exc:
        raise EventValidationError(_problems(exc, prefix)) from exc


def load_stored_event(data: dict[str, Any]) -> CanonicalEvent:
    """Read back an event we stored or queued ourselves, its ``source`` included (trusted input:
    it passed every check once, and no stored JSON can hold a NUL)."""
    return CanonicalEvent.model_validate(data, context={NUL_FREE: True})


def load_stored_event_json(text: str | bytes) -> CanonicalEvent:
    """``load_stored_event`` of the event's JSON text, decoded and validated in one pass."""
    return CanonicalEvent.model_validate_json(text, context={NUL_FREE: True})


def parse_events(payload: Any, *, source: EventSource | None = None) -> list[CanonicalEvent]:
    """Read one event, a list, or ``{"events": [...]}``; report every bad field at once."""
    if isinstance(payload, dict) and "events" in payload:
        payload = payload["events"]
        prefix = "events"
    elif isinstance(payload, list):
        prefix = "events"
    else:
        return [parse_event(payload, source=source)]
    if not isinstance(payload, list):
        raise EventValidationError(["events: expected a list of events"])
    events, problems = [], []
    for index, item in enumerate(payload):
        try:
            events.append(parse_event(item, source=source, prefix=f"{prefix}[{index}]"))
        except EventValidationError as exc:
            problems.extend(exc.problems)
    if problems:
        raise EventValidationError(problems)
    return events

"""Outbound X12: an ``invoice.generated`` event as an 810 invoice, in the envelope our 997s use.

The document is a pure function of the published event, the partner and the delivery's key: the
control number comes from the key and every date from the event, so a retried or replayed
delivery writes the same bytes. Anything that cannot be written faithfully raises ValueError.
"""

import uuid
from dataclasses import replace
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from zoneinfo import ZoneInfo

from django.conf import settings

from apps.ingest.parsers.x12_writer import (
    DEFAULT_DELIMITERS,
    REPETITION_FROM,
    Envelope,
    OutboundSet,
    Party,
    X12Writer,
    write_interchange,
)
from apps.partners.models import EdiIdentifier, Partner
from apps.timeline.events import EventKind, ReferenceKind

VERSION = "004010"
# Before 004020 ISA11 is the standards id "U": "^" is no delimiter there, so values keep it.
DELIMITERS = DEFAULT_DELIMITERS if VERSION[:5] >= REPETITION_FROM else replace(DEFAULT_DELIMITERS, repetition=None)
DEFAULT_UNIT = "EA"
SKU_QUALIFIER = "VP"  # IT106: vendor's (seller's) part number, which our SKUs are
ISA_QUALIFIER_LENGTH = 2
ISA_ID_LENGTH = 15
MAX_CONTROL_NUMBER = 999_999_999


def invoice_810(payload: dict, *, partner: Partner, key: uuid.UUID) -> str:
    """The X12 interchange (one IN group, one 810) for the ``invoice.generated`` document ``payload``."""
    if payload.get("kind") != EventKind.INVOICE_GENERATED:
        raise ValueError(f"an 810 carries {EventKind.INVOICE_GENERATED.value} events, not {payload.get('kind')!r}")
    writer = X12Writer(DELIMITERS)
    created_at = _occurred_at(payload).astimezone(ZoneInfo(partner.time_zone))
    sender, receiver = _sender(writer), _receiver(partner, writer)
    envelope = Envelope(
        sender=sender,
        receiver=receiver,
        application_sender=sender.id,
        application_receiver=receiver.id,
        control_number=control_number(key),
        created_at=created_at,
        version=VERSION,
        delimiters=DELIMITERS,
    )
    body = _body(payload, created_at.date(), writer)
    return write_interchange(envelope, "IN", [OutboundSet(type="810", body=body)])


def control_number(key: uuid.UUID) -> int:
    """ISA13/GS06 from the delivery's idempotency key: 1 to 999999999, the same on every retry."""
    return int(key.hex, 16) % MAX_CONTROL_NUMBER + 1


# envelope ----------------------------------------------------------------------------------------


def _occurred_at(payload: dict) -> datetime:
    value = payload.get("occurred_at")
    try:
        at = datetime.fromisoformat(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"occurred_at: expected an ISO 8601 time, found {value!r}") from exc
    if at.tzinfo is None:
        raise ValueError(f"occurred_at: expected a time with a UTC offset, found {value!r}")
    return at


def _sender(writer: X12Writer) -> Party:
    qualifier, colon, value = settings.EDI_SENDER_ID.partition(":")
    party = _isa_party(qualifier, value, writer) if colon else None
    if party is None:
        raise ValueError(
            f"EDI_SENDER_ID {settings.EDI_SENDER_ID!r}: expected QUALIFIER:ID with a 2-character qualifier "
            f"and an id of at most {ISA_ID_LENGTH} characters without X12 delimiters (e.g. ZZ:CONTROLTOWER)"
        )
    return party


def _receiver(partner: Partner, writer: X12Writer) -> Party:
    """The partner's first EDI identifier that fits an ISA (its EDIFACT ids may not)."""
    identifiers: list[EdiIdentifier] = list(partner.edi_identifiers.all())
    if not identifiers:
        raise ValueError(
            f"partner {partner.code} has no EDI identifier: add its X12 interchange id (qualifier and id) "
            "before sending it 810 invoices"
        )
    for identifier in identifiers:
        party = _isa_party(identifier.qualifier, identifier.value, writer)
        if party is not None:
            return party
    found = ", ".join(map(str, identifiers))
    raise ValueError(
        f"partner {partner.code}: none of its EDI identifiers ({found}) fits an ISA: expected a 2-character "
        f"qualifier and an id of at most {ISA_ID_LENGTH} characters without X12 delimiters"
    )


def _isa_party(qualifier: str, value: str, writer: X12Writer) -> Party | None:
    """None when the pair would break the fixed-width ISA, which the writer pads but does not check."""
    qualifier, value = qualifier.strip(), value.strip()
    fits = len(qualifier) == ISA_QUALIFIER_LENGTH and 0 < len(value) <= ISA_ID_LENGTH
    if not fits or not (qualifier + value).isascii() or writer.clean(qualifier + value) != qualifier + value:
        return None
    return Party(qualifier=qualifier, id=value)


# body --------------------------------------------------------------------------------------------


def _body(payload: dict, invoiced: date, writer: X12Writer) -> list[list[str]]:
    """BIG, CUR, REF*VN per order, REF*PO per further PO, IT1 per line, TDS, CTT."""
    references = _references(payload, writer)
    invoices = references.get(ReferenceKind.INVOICE, [])
    if not invoices:
        raise ValueError("an 810 needs an invoice number: the event has no usable invoice reference")
    purchase_orders = references.get(ReferenceKind.PO, [])
    orders = references.get(ReferenceKind.ORDER) or _order_numbers(payload, writer)
    lines = [_it1(line, index, writer) for index, line in enumerate(payload.get("lines") or [], start=1)]
    body = [["BIG", invoiced.strftime("%Y%m%d"), invoices[0], "", purchase_orders[0] if purchase_orders else ""]]
    currency = _currency(payload, writer)
    if currency:
        body.append(["CUR", "SE", currency])
    body.extend(["REF", "VN", order] for order in orders)
    body.extend(["REF", "PO", po] for po in purchase_orders[1:])
    body.extend(lines)
    if payload.get("amount") is not None:
        body.append(["TDS", cents(payload["amount"])])
    body.append(["CTT", str(len(lines))])
    return body


def _references(payload: dict, writer: X12Writer) -> dict[str, list[str]]:
    """Reference values by kind, cleaned of delimiters, in order and without repeats."""
    found: dict[str, list[str]] = {}
    for reference in payload.get("references") or []:
        value = _text(reference.get("value"), writer)
        values = found.setdefault(reference.get("kind"), [])
        if value and value not in values:
            values.append(value)
    return found


def _order_numbers(payload: dict, writer: X12Writer) -> list[str]:
    numbers = (_text(order.get("number"), writer) for order in payload.get("orders") or [])
    return list(dict.fromkeys(number for number in numbers if number))


def _currency(payload: dict, writer: X12Writer) -> str:
    currency = _text(payload.get("currency"), writer).upper()
    if currency and not (len(currency) == 3 and currency.isalpha()):
        raise ValueError(f"currency: expected a 3-letter code, found {payload.get('currency')!r}")
    return currency


def _it1(line: dict, index: int, writer: X12Writer) -> list[str]:
    sku = _text(line.get("sku"), writer)
    if not sku:
        raise ValueError(f"line {index}: expected a SKU, found {line.get('sku')!r}")
    price = line.get("unit_price")
    return [
        "IT1",
        _text(line.get("line_number"), writer) or str(index),
        number(line.get("quantity"), f"line {index} quantity"),
        _text(line.get("uom"), writer) or DEFAULT_UNIT,
        number(price, f"line {index} unit_price") if price is not None else "",
        "",
        SKU_QUALIFIER,
        sku,
    ]


def _text(value: object, writer: X12Writer) -> str:
    """A value without delimiters or control characters, trimmed as the reader trims it."""
    return writer.clean(str(value)).strip() if value is not None else ""


def number(value: object, what: str) -> str:
    """A decimal written as an X12 R element: plain digits, no exponent, no trailing zeros."""
    parsed = _decimal(value, what)
    text = f"{parsed:f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def cents(value: object) -> str:
    """TDS01: the amount in cents (two implied decimals, no point), rounded half up."""
    rounded = (_decimal(value, "amount") * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP)
    return "0" if rounded == 0 else f"{rounded:f}"


def _decimal(value: object, what: str) -> Decimal:
    try:
        parsed = Decimal(str(value)) if value is not None else None
    except InvalidOperation:
        parsed = None
    if parsed is None or not parsed.is_finite():
        raise ValueError(f"{what}: expected a decimal number, found {value!r}")
    return parsed

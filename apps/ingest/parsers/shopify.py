"""Shopify webhooks: orders and fulfillments, in the shape of Shopify's Admin API resources.

The receiver takes only the topics read here (``apps.ingest.webhooks.SHOPIFY_TOPICS``); what a
body means is read from the body itself, so a stored message means the same when replayed, and
two deliveries with the same body are the same message.

| topic                 | body                       | canonical events                              |
|-----------------------|----------------------------|-----------------------------------------------|
| orders/create         | an order                   | ``order.created``                             |
| orders/cancelled      | an order with cancelled_at | ``order.cancelled``                           |
| fulfillments/create   | a fulfillment              | ``shipment.manifested`` (+ tracking assigned) |
| fulfillments/update   | a fulfillment              | the same, + its ``shipment_status``           |

An order is numbered by its ``name`` (``#1001``, or the shop's own prefix), else its
``order_number``; ``po_number`` is the customer's PO. Its customer is the one set on the shop's
channel (``ParseContext.customer``), never the shop. ``mapping["promised_at_attribute"]`` names the
note attribute (cart attribute) holding a promised delivery date, when the shop collects one.
``mapping["order_prefix"]`` is put before every order and fulfillment name of the shop, so two
shops that both number from #1001 keep apart (``OUTDOOR-#1001``).

A fulfillment is a shipment numbered by its ``name`` (``#1001.1``: the order's name, a dot, the
fulfillment's number), which names its order too; ``tracking_numbers`` (or ``tracking_number``)
are its tracking references and ``tracking_company`` its carrier. Every notification of a
fulfillment carries the manifest again (the same event id: a duplicate once applied), so an update
that arrives before its create still makes the shipment; tracking numbers get a
``shipment.tracking_assigned`` whose id holds them, so numbers added later are news.

| shipment_status                        | milestone            | canonical kind                 |
|----------------------------------------|----------------------|--------------------------------|
| label_printed, label_purchased, confirmed | —                 | none: the manifest says it     |
| carrier_picked_up                      | picked_up            | shipment.picked_up             |
| in_transit                             | in_transit           | shipment.in_transit            |
| out_for_delivery                       | out_for_delivery     | shipment.out_for_delivery      |
| ready_for_pickup                       | available_for_pickup | shipment.out_for_delivery      |
| attempted_delivery                     | attempted            | shipment.delivery_attempted    |
| delivered, picked_up (by the buyer)    | delivered            | shipment.delivered             |
| failure, delayed                       | exception            | shipment.delayed               |
| (fulfillment status cancelled)         | cancelled            | shipment.delayed               |
| anything else                          | —                    | shipment.status_unmapped       |

A channel's ``mapping["status_codes"]`` overrides any of these, as for tracking aggregators.
"""

from decimal import Decimal, InvalidOperation
from typing import Any

from pydantic import ValidationError

from apps.ingest.parsers.aggregators.tracking import (
    MILESTONE_EVENTS,
    Milestone,
    TrackingMapper,
    as_dict,
    as_list,
    code_key,
    event_id,
    first,
    load_json,
    quiet_json,
    raw_text,
    read_time,
    status_table,
    text,
    without,
    zone_of,
)
from apps.ingest.parsers.base import ParseContext, ParsedDocument, ParseError, capped, collection_paused, shown
from apps.timeline.events import CanonicalEvent, EventKind, OrderInfo, ReferenceKind, normalize_reference

FEED = "shopify"
M = Milestone
STATUSES = status_table(
    {
        "carrier_picked_up": M.PICKED_UP,
        "in_transit": M.IN_TRANSIT,
        "out_for_delivery": M.OUT_FOR_DELIVERY,
        "ready_for_pickup": M.AVAILABLE_FOR_PICKUP,
        "attempted_delivery": M.ATTEMPTED,
        "delivered": M.DELIVERED,
        "picked_up": M.DELIVERED,
        "failure": M.EXCEPTION,
        "delayed": M.EXCEPTION,
        "cancelled": M.CANCELLED,
    }
)
# Before the carrier has the parcel: the manifest and its tracking numbers say all of it.
QUIET_STATUSES = frozenset(code_key(code) for code in ("label_printed", "label_purchased", "confirmed"))
K = EventKind


def _is_fulfillment(data: dict[str, Any]) -> bool:
    return "order_id" in data and ("tracking_number" in data or "tracking_numbers" in data or "shipment_status" in data)


def _is_order(data: dict[str, Any]) -> bool:
    return "line_items" in data and ("order_number" in data or "name" in data) and "order_id" not in data


def looks_like(body: bytes) -> bool:
    data = quiet_json(body)
    return isinstance(data, dict) and (_is_fulfillment(data) or _is_order(data))


@collection_paused()
def parse(body: bytes, context: ParseContext) -> ParsedDocument:
    data = load_json(body)
    if not isinstance(data, dict):
        raise ParseError("a Shopify webhook body is one JSON object (an order or a fulfillment)")
    reader = _Reader(context)
    if _is_fulfillment(data):
        reader.fulfillment(data)
    elif _is_order(data):
        reader.order(data)
    else:
        raise ParseError(
            "neither a Shopify order (line_items with a name or order_number) nor a fulfillment "
            "(order_id with tracking or shipment_status)"
        )
    reader.document.warnings = capped(reader.document.warnings)
    return reader.document


class _Reader:
    def __init__(self, context: ParseContext) -> None:
        self.context = context
        self.zone = zone_of(context)
        self.document = ParsedDocument()
        self.mapper = TrackingMapper(
            FEED, STATUSES, context, overrides=context.mapping.get("status_codes"), document=self.document
        )
        self.overridden = {code_key(str(code)) for code in (context.mapping.get("status_codes") or {})}
        self.prefix = text(context.mapping.get("order_prefix"))

    # --- orders -------------------------------------------------------------------------------

    def order(self, order: dict[str, Any]) -> None:
        number = text(order.get("name")) or text(order.get("order_number"))
        if not normalize_reference(number):
            raise ParseError("the order has neither a name (such as #1001) nor an order_number")
        number = self.prefix + number
        references = [{"kind": ReferenceKind.ORDER, "value": number}]
        if normalize_reference(po := text(order.get("po_number"))):
            references.append({"kind": ReferenceKind.PO, "value": po})
        shopify_id = text(order.get("id")) or number
        attributes = {
            "feed": FEED,
            "shopify_order_id": text(order.get("id")) or None,
            "financial_status": text(order.get("financial_status")) or None,
        }
        if text(order.get("cancelled_at")):
            event = self._event(
                event_id=self._id(number, "order", shopify_id, "cancelled"),
                kind=K.ORDER_CANCELLED,
                occurred_at=self._time(order.get("cancelled_at"), "cancelled_at"),
                references=references,
                attributes={**attributes, "reason": text(order.get("cancel_reason")) or None},
                raw=raw_text(without(order, "line_items")),
            )
        else:
            event = self._event(
                event_id=self._id(number, "order", shopify_id, "created"),
                kind=K.ORDER_CREATED,
                occurred_at=self._time(first(order.get("created_at"), order.get("processed_at")), "created_at"),
                references=references,
                lines=self._lines(order, f"order {number}"),
                amount=text(order.get("total_price")) or None,
                currency=text(order.get("currency")) or None,
                order=self._order_info(order, number),
                attributes=attributes,
                raw=raw_text(order),
            )
        self.document.events.append(event)

    def _order_info(self, order: dict[str, Any], number: str) -> OrderInfo:
        if not self.context.customer:
            raise ParseError(
                "the channel names no customer, so the order would belong to nobody: set the customer "
                "of the shop's channel, then replay"
            )
        return OrderInfo(customer=self.context.customer, promised_at=self._promised_at(order, number))

    def _promised_at(self, order: dict[str, Any], number: str) -> Any:
        name = text(self.context.mapping.get("promised_at_attribute"))
        if not name:
            return None
        for attribute in as_list(order.get("note_attributes")):
            attribute = as_dict(attribute)
            if text(attribute.get("name")) == name and text(attribute.get("value")):
                try:
                    return read_time(attribute.get("value"), self.zone).at
                except ValueError as exc:
                    self.document.warnings.append(f"order {number}: note attribute {shown(name)}: {exc}; ignored")
        return None

    def _lines(self, resource: dict[str, Any], where: str) -> list[dict[str, Any]]:
        lines = []
        for position, item in enumerate(as_list(resource.get("line_items")), start=1):
            item = as_dict(item)
            sku = text(item.get("sku"))
            if not sku:
                sku = text(item.get("variant_id")) or text(item.get("title"))
                self.document.warnings.append(
                    f"{where} line {position}: no SKU; {'identified as ' + shown(sku) if sku else 'skipped'}"
                )
                if not sku:
                    continue
            try:
                quantity = Decimal(text(item.get("quantity")))
            except InvalidOperation:
                quantity = Decimal("NaN")
            if not quantity.is_finite():
                self.document.warnings.append(f"{where} line {position}: quantity is not a number; skipped")
                continue
            line = {"sku": sku[:100], "quantity": quantity, "line_number": str(position)}
            if text(item.get("price")):
                line["unit_price"] = text(item.get("price"))
            lines.append(line)
        return lines

    # --- fulfillments -------------------------------------------------------------------------

    def fulfillment(self, fulfillment: dict[str, Any]) -> None:
        name = text(fulfillment.get("name"))
        order_name, dot, sequence = name.rpartition(".")
        if not (dot and normalize_reference(order_name) and sequence):
            raise ParseError(
                f"the fulfillment's name {shown(name)} does not name its order: Shopify names fulfillments "
                "after their order, such as #1001.1"
            )
        name, order_name = self.prefix + name, self.prefix + order_name
        numbers = list(
            dict.fromkeys(
                number
                for number in (
                    text(value)
                    for value in [*as_list(fulfillment.get("tracking_numbers")), fulfillment.get("tracking_number")]
                )
                if normalize_reference(number) and len(number) <= 100
            )
        )
        references = [
            {"kind": ReferenceKind.SHIPMENT, "value": name},
            {"kind": ReferenceKind.ORDER, "value": order_name},
            *({"kind": ReferenceKind.TRACKING, "value": number} for number in numbers),
        ]
        shopify_id = text(fulfillment.get("id")) or name
        created = self._time(first(fulfillment.get("created_at"), fulfillment.get("updated_at")), "created_at")
        updated = (
            self._time(fulfillment.get("updated_at"), "updated_at") if text(fulfillment.get("updated_at")) else created
        )
        urls = [text(url) for url in as_list(fulfillment.get("tracking_urls")) if text(url)]
        attributes = {
            "feed": FEED,
            "carrier": text(fulfillment.get("tracking_company")) or None,
            "shopify_fulfillment_id": text(fulfillment.get("id")) or None,
            "shopify_order_id": text(fulfillment.get("order_id")) or None,
            "tracking_url": first(text(fulfillment.get("tracking_url")), *urls),
        }
        raw = raw_text(fulfillment)
        events = [
            self._event(
                event_id=self._id(name, "fulfillment", shopify_id, "manifested"),
                kind=K.SHIPMENT_MANIFESTED,
                occurred_at=created,
                references=references,
                lines=self._lines(fulfillment, f"fulfillment {name}"),
                attributes=attributes,
                raw=raw,
            )
        ]
        if numbers:
            events.append(
                self._event(
                    event_id=self._id(name, "fulfillment", shopify_id, "tracking", *numbers),
                    kind=K.SHIPMENT_TRACKING_ASSIGNED,
                    occurred_at=updated,
                    references=references,
                    attributes=attributes,
                    raw=raw,
                )
            )
        code = (
            "cancelled" if text(fulfillment.get("status")) == "cancelled" else text(fulfillment.get("shipment_status"))
        )
        if code and (code_key(code) not in QUIET_STATUSES or code_key(code) in self.overridden):
            resolution = self.mapper.resolve((code,))
            status = {
                **attributes,
                "status_code": code,
                "milestone": resolution.milestone.value if resolution.milestone else None,
            }
            if resolution.kind == K.SHIPMENT_DELAYED:
                default = MILESTONE_EVENTS[resolution.milestone][1] if resolution.milestone else None
                status["reason"] = default or code
            events.append(
                self._event(
                    event_id=self._id(name, "fulfillment", shopify_id, "status", code),
                    kind=resolution.kind,
                    occurred_at=updated,
                    references=references,
                    attributes=status,
                    raw=raw,
                )
            )
        self.document.events.extend(events)

    # --- shared -------------------------------------------------------------------------------

    def _id(self, label: str, *parts: str) -> str:
        """Deterministic from the shop and the business content: a retry, or the same news sent
        again, is a duplicate."""
        return event_id(FEED, self.context.partner, normalize_reference(label)[:60], *parts)

    def _time(self, value: Any, what: str) -> Any:
        if not text(value):
            raise ParseError(f"{what} is missing")
        try:
            return read_time(value, self.zone).at
        except ValueError as exc:
            raise ParseError(f"{what}: {exc}") from None

    def _event(self, *, attributes: dict[str, Any], **fields: Any) -> CanonicalEvent:
        try:
            return CanonicalEvent(
                attributes={name: value for name, value in attributes.items() if value is not None}, **fields
            )
        except ValidationError as exc:
            problem = exc.errors()[0]
            where = ".".join(str(part) for part in problem["loc"])
            raise ParseError(f"{fields['kind'].value}: {where}: {problem['msg']}") from None

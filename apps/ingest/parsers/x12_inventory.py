"""X12 846, 947 and 180: stock and returns as canonical events.

- **846 Inventory Inquiry/Advice** → one ``inventory.snapshot`` per warehouse (split in parts of
  5,000 lines). ``BIA`` gives the report (BIA03), its type (BIA02) and its date (BIA04/BIA05, else
  a header ``DTM*007``/``DTM*009``, else the envelope). Each ``LIN`` loop is an item (qualifier/id
  pairs: SK, VP, BP, UP, IN, EN, MG, VN, in that order of preference) whose ``QTY`` segments give
  quantities by kind (QTY01: 17 on hand, 33 available for sale, 02 cumulative, 29 on order, 61 in
  transit; a channel changes or adds kinds with ``mapping_overrides["quantity_qualifiers"]``). An
  ``SDQ`` after a ``QTY`` splits that quantity by location (SDQ03/04, 05/06, …), each location a
  warehouse. The warehouse is an ``N1*WH`` (or ``N1*RL``, reporting location) of the header or of
  the item's loop, resolved as ``apps.ingest.parsers.inventory`` says, else the sender.
- **947 Warehouse Inventory Adjustment Advice** → ``inventory.adjusted``, one event per
  adjustment reason (W1901), with the warehouse of the header's ``N1*WH`` (else the sender), the
  adjustment number (W1502) and its date (W1501). Each ``W19`` is a line: W1902 the quantity,
  W1903 the unit, the UPC case code (W1904) and qualifier/id pairs (W1905-08, W1917/18). The
  reason code says which way stock moved when it has a direction (06 book adjustment decrease, 56
  book adjustment increase, 07 dumped, AU damaged in facility …); for the others (AA physical
  count, AB accounting error …) the quantity's sign does. Hold and quality-inspection codes (05,
  55, 08, 88, PC) change a status, not the quantity on hand: reported, not applied. A code no
  table knows is a warning and listed as unmapped; its quantity is applied as signed. A channel
  sets a code's effect with ``mapping_overrides["adjustment_reasons"]`` (``{"ZZ": "decrease"}``;
  one of increase, decrease, signed, status).
- **180 Return Merchandise Authorization and Notification** → ``return.authorized``, or
  ``return.received`` when the set carries a received date (``DTM*050``). The RMA number is
  ``N9*RZ``, else BGN02; ``PRF01`` and ``N9*PO``/``N9*CO`` are purchase orders, ``N9*VN`` the
  order, ``N9*IV`` the invoice. Items are ``BLI`` (BLI01/02 and BLI08-13 ids, BLI03 quantity,
  BLI04 unit) or ``LIN`` loops with a ``QTY``. A request for authorization (BGN01 13) and a
  cancellation (BGN01 01) are reported as not supported.

Quantities keep the unit the partner sent (the first component of a composite unit).
"""

from decimal import Decimal
from typing import Any

from apps.ingest.parsers import inventory
from apps.ingest.parsers.x12_reader import Segment
from apps.ingest.parsers.x12_sets import (
    References,
    SetDocument,
    SetRejected,
    add_qualified,
    build_line,
    capped,
    first,
    matching,
    party,
    pick_sku,
)
from apps.ingest.parsers.x12_values import Moment, identifier_pairs, read_decimal
from apps.timeline.events import CanonicalEvent, EventKind, EventLine, EventLocation, ReferenceKind

WAREHOUSE_PARTIES = ("WH", "RL")  # N101: warehouse, reporting location
CANCELLATION = "01"  # BIA01 / BGN01 transaction set purpose

# 846 QTY01 (data element 673) defaults.
QTY_846 = {
    "17": inventory.ON_HAND,
    "33": inventory.AVAILABLE,
    "02": "cumulative",
    "29": "on_order",
    "61": "in_transit",
}
AS_OF_846 = ("007", "009")  # header DTM: effective, processed

# 947 W1901 (data element 181): what the code does to the quantity on hand.
INCREASE, DECREASE, SIGNED, STATUS = "increase", "decrease", "signed", "status"
EFFECTS = (INCREASE, DECREASE, SIGNED, STATUS)
ADJUSTMENT_REASONS: dict[str, tuple[str, str]] = {
    "03": (DECREASE, "shipment greater than previously reported"),
    "04": (DECREASE, "receipt less than previously reported"),
    "05": (STATUS, "product put on hold"),
    "06": (DECREASE, "book adjustment decrease"),
    "07": (DECREASE, "product dumped or destroyed"),
    "08": (STATUS, "product put in quality inspection inventory"),
    "51": (INCREASE, "unable-to-locate product located"),
    "52": (SIGNED, "recoup/rework of damaged product"),
    "53": (INCREASE, "shipment less than previously reported"),
    "54": (INCREASE, "receipt greater than previously reported"),
    "55": (STATUS, "product taken off hold"),
    "56": (INCREASE, "book adjustment increase"),
    "88": (STATUS, "product removed from quality inspection inventory"),
    "AA": (SIGNED, "physical count"),
    "AB": (SIGNED, "accounting error"),
    "AC": (SIGNED, "condition change"),
    "AD": (SIGNED, "purpose change"),
    "AE": (SIGNED, "reidentification"),
    "AF": (SIGNED, "stock number change"),
    "AG": (SIGNED, "ownership change"),
    "AH": (SIGNED, "other"),
    "AI": (DECREASE, "disaster"),
    "AJ": (SIGNED, "survey"),
    "AK": (SIGNED, "transfer"),
    "AL": (SIGNED, "capitalization"),
    "AN": (SIGNED, "unit of issue change"),
    "AP": (DECREASE, "product/formula evaluation and testing"),
    "AR": (SIGNED, "order shipment error"),
    "AS": (SIGNED, "recouping"),
    "AT": (SIGNED, "prepack preparation"),
    "AU": (DECREASE, "damaged in facility"),
    "AV": (DECREASE, "damaged in transit"),
    "AW": (DECREASE, "product recall"),
    "AX": (DECREASE, "shelf-life obsolescence"),
    "AY": (SIGNED, "receipt error"),
    "BA": (SIGNED, "operating variance"),
    "BD": (DECREASE, "nonrecoverable"),
    "BK": (SIGNED, "off specification"),
    "BM": (SIGNED, "replacement"),
    "BN": (DECREASE, "tariff deduction"),
    "BR": (SIGNED, "regrade"),
    "BS": (SIGNED, "downgrade"),
    "BT": (SIGNED, "additive"),
    "CD": (DECREASE, "product donations"),
    "CO": (SIGNED, "consignment"),
    "CR": (INCREASE, "customer returned inventory"),
    "CS": (DECREASE, "product samples"),
    "PC": (STATUS, "product reserved for customer"),
    "TC": (SIGNED, "tax conversion"),
    "UD": (DECREASE, "unauthorized destruction"),
}

# 180 N9 qualifiers (data element 128).
N9_180 = {
    "RZ": ReferenceKind.RMA,  # returned goods authorization number
    "PO": ReferenceKind.PO,
    "CO": ReferenceKind.PO,  # customer order number: the customer's purchase order
    "VN": ReferenceKind.ORDER,
    "IV": ReferenceKind.INVOICE,
    "BM": ReferenceKind.BOL,
    "CN": ReferenceKind.PRO,
    "2I": ReferenceKind.TRACKING,
}
RECEIVED = "050"  # DTM qualifier
REQUEST = "13"  # BGN01: request


def unit(doc: SetDocument, segment: Segment, position: int) -> str:
    """The unit code of a simple or composite element (C001: its first component), EA when absent."""
    value = segment.get(position).split(doc.interchange.delimiters.component)[0].strip()
    return (value or "EA")[:10]


def warehouses(doc: SetDocument) -> inventory.Warehouses:
    own = (doc.interchange.header.get(6), doc.group.get(2) if doc.group.header is not None else "")
    return inventory.Warehouses(doc.context.mapping, doc.context.partner, own, doc.warn)


def warehouse_party(segments: list[Segment]) -> tuple[str, EventLocation | None] | None:
    """The first N1 loop naming a warehouse: its id (N104) and the place (name, N4 address)."""
    for segment in segments:
        if segment.id == "N1" and segment.get(1).upper() in WAREHOUSE_PARTIES:
            return segment.get(4), party(segments, segment.get(1).upper())
    return None


def _loops(segments: list[Segment], starts: tuple[str, ...]) -> tuple[list[Segment], list[list[Segment]]]:
    """Segments before the first loop, and each loop (from one of ``starts`` to the next)."""
    header: list[Segment] = []
    loops: list[list[Segment]] = []
    for segment in segments:
        if segment.id in starts:
            loops.append([segment])
        elif segment.id == "CTT":  # the summary: no loop goes on past it
            break
        else:
            (loops[-1] if loops else header).append(segment)
    return header, loops


def _some(skus: list[str], limit: int = 5) -> str:
    shown = ", ".join(repr(sku) for sku in skus[:limit])
    return shown + (f" and {len(skus) - limit} more" if len(skus) > limit else "")


# 846 ---------------------------------------------------------------------------------------------


def map_846(doc: SetDocument) -> list[CanonicalEvent]:
    bia = doc.require("BIA")
    if bia.get(1) == CANCELLATION:
        doc.unsupported.append(f"X12 846 cancellation (BIA01 '01') of report {bia.get(3)!r} is not supported")
        return []
    header, loops = _loops(doc.segments, ("LIN",))
    if not loops:
        raise SetRejected("expected LIN items after the header, found none: the 846 reports no stock")
    table = inventory.quantity_table(QTY_846, doc.context.mapping, doc.warn)
    places = warehouses(doc)
    default = warehouse_party(header)
    stocks: dict[tuple[str | None, str, str], inventory.Stock] = {}
    locations: dict[str | None, EventLocation | None] = {}
    for loop in loops:
        own = warehouse_party(loop) or default
        location_id, location = own if own else ("", None)
        for code, sku, uom, kind, quantity in _item_846(doc, loop, table, places, location_id):
            locations.setdefault(code, location if code == places.code(location_id) else None)
            stocks.setdefault((code, sku, uom), inventory.Stock(sku, uom)).add(kind, quantity)
    as_of = doc.moment(bia, 4, 5) or next(
        (found for dtm in header if dtm.id == "DTM" and dtm.get(1) in AS_OF_846 if (found := doc.moment(dtm, 2, 3, 4))),
        None,
    )
    attributes = {"report": bia.get(3)[:100], "report_type": bia.get(2)}
    events = []
    for code, location in locations.items():
        own_stocks = [stock for (where, _, _), stock in stocks.items() if where == code]
        events += _snapshots(doc, code, own_stocks, location, as_of, attributes)
    return events


def _item_846(
    doc: SetDocument, loop: list[Segment], table: dict[str, str], places: inventory.Warehouses, location_id: str
) -> list[tuple[str | None, str, str, str, Decimal]]:
    """(warehouse, sku, unit, kind, quantity) for each quantity of one LIN loop."""
    lin = loop[0]
    sku = pick_sku(identifier_pairs(lin, 2))[:100]
    if not sku:
        doc.warn(f"{lin.label()}: expected a product identifier (SK, VP, BP, UP…), found none; item ignored")
        return []
    found: list[tuple[str | None, str, str, str, Decimal]] = []
    last: tuple[str, str] | None = None  # (kind, unit) of the latest QTY, which an SDQ splits by location
    for segment in loop[1:]:
        if segment.id == "QTY":
            last = None
            qualifier = segment.get(1).upper()
            kind = table.get(qualifier)
            if kind is None:
                doc.unmapped_codes.append(f"QTY01:{qualifier}")
                doc.unsupported.append(
                    f"X12 846 QTY01 {qualifier!r} (item {sku!r}, {segment.label()}): a kind of quantity no table "
                    "knows; not read (a channel names it with quantity_qualifiers)"
                )
                continue
            quantity = read_decimal(segment, 2, doc.warn)
            if quantity is None:
                doc.warn(f"{segment.label(2)}: expected the quantity of {sku!r}, found none; ignored")
                continue
            last = (kind, unit(doc, segment, 3))
            found.append((places.code(location_id), sku, last[1], kind, quantity))
        elif segment.id == "SDQ":
            if last is None:
                doc.warn(f"{segment.label()}: quantities by location without a QTY before them; ignored")
                continue
            found.pop()  # the total is replaced by its parts
            uom = unit(doc, segment, 1) if segment.get(1) else last[1]
            for position in range(3, 23, 2):
                place, quantity = segment.get(position), read_decimal(segment, position + 1, doc.warn)
                if place and quantity is not None:
                    found.append((places.code(place), sku, uom, last[0], quantity))
            last = None
    return found


def _snapshots(
    doc: SetDocument,
    code: str | None,
    stocks: list[inventory.Stock],
    location: EventLocation | None,
    as_of: Moment | None,
    attributes: dict[str, Any],
) -> list[CanonicalEvent]:
    lines, without = [], []
    for stock in stocks:
        figure = stock.stock
        if figure is None:
            without.append(stock.sku)
            continue
        lines.append((stock, EventLine(sku=stock.sku, quantity=figure[1], uom=stock.uom)))
    if without:
        doc.unsupported.append(
            f"X12 846 warehouse {code or '(the sender)'}: {len(without)} item(s) without an on-hand or available "
            f"quantity leave their stock position as it was: {_some(without)}"
        )
    if not lines:
        return []
    chunks = inventory.parts(lines)
    events = []
    for number, chunk in enumerate(chunks, start=1):
        events.append(
            doc.event(
                EventKind.INVENTORY_SNAPSHOT,
                moment=doc.when(as_of),
                refs=References(doc.warn),
                lines=[line for _, line in chunk],
                location=location,
                attributes={
                    **attributes,
                    "warehouse": code,
                    "quantities": inventory.quantities_attribute(stock for stock, _ in chunk),
                    "part": f"{number}/{len(chunks)}" if len(chunks) > 1 else None,
                },
                timeless_id=as_of is None,
            )
        )
    return events


# 947 ---------------------------------------------------------------------------------------------


def reason_table(doc: SetDocument) -> dict[str, tuple[str, str]]:
    table = dict(ADJUSTMENT_REASONS)
    overrides = doc.context.mapping.get("adjustment_reasons") or {}
    if not isinstance(overrides, dict):
        doc.warn("mapping adjustment_reasons: expected an object {code: effect}; ignored")
        return table
    for code, effect in overrides.items():
        if effect not in EFFECTS:
            doc.warn(f"mapping adjustment_reasons: {code!r} -> {effect!r} is not one of {', '.join(EFFECTS)}; ignored")
            continue
        key = str(code).strip().upper()
        table[key] = (effect, table.get(key, (effect, ""))[1])
    return table


def map_947(doc: SetDocument) -> list[CanonicalEvent]:
    w15 = doc.require("W15")
    header, loops = _loops(doc.segments, ("W19", "LX"))
    if not any(segment.id == "W19" for loop in loops for segment in loop):
        raise SetRejected("expected W19 adjustment items, found none")
    own = warehouse_party(header)
    location_id, location = own if own else ("", None)
    code = warehouses(doc).code(location_id)
    table = reason_table(doc)
    by_reason: dict[str, list[EventLine | None]] = {}
    for w19 in matching(doc.segments, "W19"):
        reason = w19.get(1).upper()
        line = _adjustment_line(doc, w19, reason, table.get(reason))
        if line is not False:
            by_reason.setdefault(reason, []).append(line)
    adjusted = doc.moment(w15, 1, None)
    events = []
    for reason, lines in by_reason.items():
        kept = capped(lines, doc)
        if not kept:
            continue
        events.append(
            doc.event(
                EventKind.INVENTORY_ADJUSTED,
                moment=doc.when(adjusted),
                refs=References(doc.warn),
                lines=kept,
                location=location,
                attributes={
                    "warehouse": code,
                    "adjustment": w15.get(2)[:100],
                    "reason_code": reason or None,
                    "reason": table.get(reason, ("", ""))[1] or None,
                },
                timeless_id=adjusted is None,
            )
        )
    return events


def _adjustment_line(doc: SetDocument, w19: Segment, reason: str, known: tuple[str, str] | None) -> Any:
    """The line with its signed quantity; None when unreadable (warned), False for a status change."""
    pairs = identifier_pairs(w19, 5, 8)
    for qualifier, value in identifier_pairs(w19, 17, 18).items():
        pairs.setdefault(qualifier, value)
    if w19.get(4):
        pairs.setdefault("UP", w19.get(4))
    sku = pick_sku(pairs)[:100]
    line = build_line(doc, w19, sku=sku, quantity_at=2, uom_at=3)
    if line is None:
        return None
    quantity = line.quantity
    if known is None:
        doc.unmapped_codes.append(f"W1901:{reason}")
        doc.warn(
            f"{w19.label(1)}: unknown adjustment reason {reason!r} for {sku!r}; the quantity is applied as sent "
            f"({quantity}) (a channel gives the code its effect with adjustment_reasons)"
        )
        effect = SIGNED
    else:
        effect, name = known
        if effect == STATUS:
            doc.unsupported.append(
                f"X12 947 W19 reason {reason} ({name}) for {sku!r}: a status change, not a change of the "
                "quantity on hand; not applied"
            )
            return False
        if quantity < 0 and effect == INCREASE:
            doc.warn(f"{w19.label(2)}: {quantity} for {sku!r} with reason {reason} ({name}): read as an increase")
    if effect == INCREASE:
        quantity = abs(quantity)
    elif effect == DECREASE:
        quantity = -abs(quantity)
    return line.model_copy(update={"quantity": quantity, "uom": unit(doc, w19, 3)})


# 180 ---------------------------------------------------------------------------------------------


def map_180(doc: SetDocument) -> list[CanonicalEvent]:
    bgn = doc.require("BGN")
    purpose = bgn.get(1)
    if purpose in (CANCELLATION, REQUEST):
        what = "cancellation" if purpose == CANCELLATION else "request for a return authorization"
        doc.unsupported.append(f"X12 180 {what} (BGN01 {purpose!r}) of {bgn.get(2)!r} is not supported")
        return []
    header, loops = _loops(doc.segments, ("BLI", "LIN", "LX"))
    refs = References(doc.warn)
    rma = first(header, "N9", "RZ")
    refs.add(ReferenceKind.RMA, rma.get(2) if rma else bgn.get(2), rma or bgn, 2)
    if not refs:
        raise SetRejected(f"{bgn.label()}: expected an RMA number (N9*RZ or BGN02), found none")
    prf = first(header, "PRF")
    if prf is not None:
        refs.add(ReferenceKind.PO, prf.get(1), prf, 1)
    add_qualified(refs, header, "N9", N9_180)
    lines = [_return_line(doc, loop) for loop in loops]
    received = next(
        (found for dtm in matching(doc.segments, "DTM", RECEIVED) if (found := doc.moment(dtm, 2, 3, 4))), None
    )
    stated = received or doc.moment(bgn, 3, 4, 5)
    rdr = first(header, "RDR")
    place = next((found for entity in ("WH", "ST") if (found := party(header, entity))), None)
    return [
        doc.event(
            EventKind.RETURN_RECEIVED if received else EventKind.RETURN_AUTHORIZED,
            moment=doc.when(stated),
            refs=refs,
            lines=capped(lines, doc),
            location=place,
            attributes={
                "reason_code": rdr.get(2) if rdr else None,
                "reason": rdr.get(4)[:200] if rdr else None,
                "disposition": rdr.get(1) if rdr else None,
            },
            timeless_id=stated is None,
        )
    ]


def _return_line(doc: SetDocument, loop: list[Segment]) -> EventLine | None:
    start = loop[0]
    if start.id == "BLI":
        pairs = identifier_pairs(start, 1, 2)
        for qualifier, value in identifier_pairs(start, 8, 14).items():
            pairs.setdefault(qualifier, value)
        return build_line(doc, start, sku=pick_sku(pairs), quantity_at=3, uom_at=4)
    if start.id == "LX":
        lin = first(loop, "LIN")
        if lin is None:
            return None
        start = lin
    qty = first(loop, "QTY")
    if qty is None:
        doc.warn(f"{start.label()}: item has no QTY (quantity returned); line ignored")
        return None
    pairs = identifier_pairs(start, 2)
    return build_line(doc, qty, sku=pick_sku(pairs), quantity_at=2, uom_at=3, line_number=start.get(1))


MAPPERS = {"846": map_846, "947": map_947, "180": map_180}

"""What the inventory documents (X12 846 and 947, EDIFACT INVRPT) share.

A stock figure is for a warehouse, named on the event as ``attributes.warehouse``: a partner
code. Documents name it in their own terms (an N1 or NAD party, an SDQ or LOC location id), so:

1. the channel's ``mapping_overrides["warehouses"]`` (``{"location id": "PARTNER-CODE"}``) wins;
2. no location, or one naming the sender itself (its partner code, or one of its interchange ids:
   ISA06, GS02, the UNB sender), is the sending partner;
3. any other id is taken as the partner code it names: the timeline refuses the event, saying
   which warehouse it does not know, rather than booking another site's stock on the sender's.

A snapshot line's quantity is the quantity on hand, else the quantity available when the document
gives only that; every quantity read is kept in ``attributes.quantities`` by kind.
"""

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

# Kinds of quantity a document may report for an item.
ON_HAND = "on_hand"
AVAILABLE = "available"
KINDS = frozenset(
    {
        ON_HAND,
        AVAILABLE,
        "on_order",
        "in_transit",
        "cumulative",
        "committed",
        "on_hold",
        "backorder",
        "unusable",
        "received",
        "despatched",
        "returned",
        "destroyed",
    }
)
# The quantity a snapshot line carries, in order of preference.
STOCK_KINDS = (ON_HAND, AVAILABLE)
PARTNER_CODE_LENGTH = 40
# Lines per snapshot event: a large report is split into parts, as the CSV feed does.
PART_SIZE = 5000


def quantity_table(defaults: dict[str, str], mapping: dict[str, Any], warn: Callable[[str], None]) -> dict[str, str]:
    """``defaults`` with the channel's ``quantity_qualifiers`` overrides ({qualifier: kind})."""
    table = dict(defaults)
    overrides = mapping.get("quantity_qualifiers") or {}
    if not isinstance(overrides, dict):
        warn("mapping quantity_qualifiers: expected an object {qualifier: kind}; ignored")
        return table
    for qualifier, kind in overrides.items():
        if kind not in KINDS:
            warn(
                f"mapping quantity_qualifiers: {qualifier!r} -> {kind!r} is not a kind of quantity "
                f"({', '.join(sorted(KINDS))}); ignored"
            )
            continue
        table[str(qualifier).strip().upper()] = kind
    return table


class Warehouses:
    """Location ids to warehouse partner codes (see the module's docstring)."""

    def __init__(
        self, mapping: dict[str, Any], partner: str | None, own_ids: Iterable[str], warn: Callable[[str], None]
    ) -> None:
        self.partner = partner
        self.own_ids = {value.strip().upper() for value in own_ids if value and value.strip()}
        table = mapping.get("warehouses") or {}
        if not isinstance(table, dict) or not all(isinstance(v, str) and v for v in table.values()):
            warn('mapping warehouses: expected an object {"location id": "partner code"}; ignored')
            table = {}
        self.table = {str(key).strip().upper(): value for key, value in table.items()}

    def code(self, location_id: str) -> str | None:
        key = location_id.strip().upper()
        if not key:
            return self.partner
        if key in self.table:
            return self.table[key]
        if (self.partner and key == self.partner.upper()) or key in self.own_ids:
            return self.partner
        return location_id.strip()[:PARTNER_CODE_LENGTH]


@dataclass
class Stock:
    """The quantities read for one (warehouse, SKU, unit): a snapshot line and its details."""

    sku: str
    uom: str
    quantities: dict[str, Decimal] = field(default_factory=dict)

    def add(self, kind: str, quantity: Decimal) -> None:
        """Two figures of one kind (lots, or two loops for the same item) add up."""
        self.quantities[kind] = self.quantities.get(kind, Decimal(0)) + quantity

    @property
    def stock(self) -> tuple[str, Decimal] | None:
        for kind in STOCK_KINDS:
            if kind in self.quantities:
                return kind, self.quantities[kind]
        return None


def parts(items: list[Any], size: int = PART_SIZE) -> list[list[Any]]:
    return [items[start : start + size] for start in range(0, len(items), size)] or [[]]


def quantities_attribute(stocks: Iterable[Stock]) -> dict[str, dict[str, str]]:
    """``{sku: {kind: quantity}}`` (``sku unit`` when one SKU comes in two units)."""
    stocks = list(stocks)
    skus = [stock.sku for stock in stocks]
    return {
        (stock.sku if skus.count(stock.sku) == 1 else f"{stock.sku} {stock.uom}"): {
            kind: str(quantity) for kind, quantity in sorted(stock.quantities.items())
        }
        for stock in stocks
    }

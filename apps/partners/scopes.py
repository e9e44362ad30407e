"""What a partner may send: scopes, each a set of event kinds and a rule about whose subjects.

A token or an inbound channel carries a list of scope names; an event is allowed when one of the
scopes lists its kind and that scope's rule holds for the event's order or shipment. The rules
themselves are checked by the timeline, which knows orders and shipments
(``apps.timeline.scopes``); this module only names them, so that partners stay the ground floor.
"""

from dataclasses import dataclass
from enum import StrEnum


class Rule(StrEnum):
    ANY = "any"  # any subject: the ERP's orders and invoices are its own by definition
    # orders whose customer is the sender (or the customer its channel sends for), or that it created
    OWN_ORDER = "own_order"
    RELEASED_TO = "released_to"  # orders released to the sender (a warehouse), their shipments
    CARRIED = "carried"  # shipments whose ship notice or tracking assignment names the sender
    OWN_WAREHOUSE = "own_warehouse"  # inventory of the sender's own warehouse


@dataclass(frozen=True)
class Scope:
    label: str
    kinds: frozenset[str]
    rule: Rule


ORDER_FULFILMENT = {"order.allocated", "order.picked", "order.packed"}
SHIPPING = {"shipment.manifested", "shipment.tracking_assigned"}
CARRIER_MILESTONES = {
    "shipment.tracking_assigned",
    "shipment.picked_up",
    "shipment.in_transit",
    "shipment.out_for_delivery",
    "shipment.eta_updated",
    "shipment.delayed",
    "shipment.delivery_attempted",
    "shipment.delivered",
    "shipment.pod_received",
    "shipment.damaged",
    "shipment.refused",
    "shipment.status_unmapped",
}
# What an eCommerce platform learns from the carrier about the parcels of its own orders.
SHOP_DELIVERY = {
    "shipment.picked_up",
    "shipment.in_transit",
    "shipment.out_for_delivery",
    "shipment.delayed",
    "shipment.delivery_attempted",
    "shipment.delivered",
    "shipment.status_unmapped",
}
INVENTORY = {"inventory.snapshot", "inventory.adjusted"}
ALL_KINDS = {
    *("order.created", "order.released", "order.cancelled", *ORDER_FULFILMENT, *SHIPPING, *CARRIER_MILESTONES),
    *("freight.charge_posted", "freight.charge_validated", "freight.charge_disputed", "freight.charge_settled"),
    *("invoice.generated", "invoice.held", "invoice.released", "invoice.posted"),
    *("return.authorized", "return.received", *INVENTORY),
}

SCOPES: dict[str, Scope] = {
    "orders": Scope(
        "Orders: create, release, cancel", frozenset({"order.created", "order.released", "order.cancelled"}), Rule.ANY
    ),
    "invoices": Scope(
        "Invoices: generated, held, released, posted",
        frozenset({"invoice.generated", "invoice.held", "invoice.released", "invoice.posted"}),
        Rule.ANY,
    ),
    "returns": Scope("Returns: authorised and received", frozenset({"return.authorized", "return.received"}), Rule.ANY),
    "book_stock": Scope("Book stock (inventory as the ERP records it)", frozenset(INVENTORY), Rule.ANY),
    "freight_settlement": Scope(
        "Freight validation and settlement",
        frozenset({"freight.charge_validated", "freight.charge_disputed", "freight.charge_settled"}),
        Rule.ANY,
    ),
    "fulfilment": Scope(
        "Allocation, picking, packing, ship notices and tracking for orders released to it",
        frozenset(ORDER_FULFILMENT | SHIPPING),
        Rule.RELEASED_TO,
    ),
    "own_inventory": Scope(
        "Its own warehouse's inventory: snapshots, adjustments, receipts", frozenset(INVENTORY), Rule.OWN_WAREHOUSE
    ),
    "returns_received": Scope("Returns received", frozenset({"return.received"}), Rule.ANY),
    "transport_planning": Scope(
        "Tracking assignment naming the carrier, for any shipment", frozenset({"shipment.tracking_assigned"}), Rule.ANY
    ),
    "carried_shipments": Scope("Milestones of the shipments it carries", frozenset(CARRIER_MILESTONES), Rule.CARRIED),
    "freight_charges": Scope(
        "Freight charges for the shipments it carries", frozenset({"freight.charge_posted"}), Rule.CARRIED
    ),
    # Never a default: granted by hand to a company's own integration hub that relays every feed.
    "relay": Scope(
        "Everything, about any subject (a trusted hub relaying other partners' feeds)", frozenset(ALL_KINDS), Rule.ANY
    ),
    "own_orders": Scope(
        "Creating and cancelling its own orders", frozenset({"order.created", "order.cancelled"}), Rule.OWN_ORDER
    ),
    "shop_orders": Scope(
        "Its own orders (or its channel's customer's) and their fulfilment and delivery",
        frozenset({"order.created", "order.released", "order.cancelled", *ORDER_FULFILMENT, *SHIPPING, *SHOP_DELIVERY}),
        Rule.OWN_ORDER,
    ),
}

# By partner kind (Partner.Kind values).
DEFAULT_SCOPES: dict[str, list[str]] = {
    "erp": ["orders", "invoices", "returns", "book_stock", "freight_settlement"],
    "warehouse": ["fulfilment", "own_inventory", "returns_received"],
    "carrier": ["carried_shipments", "freight_charges"],
    # A TMS plans transport for shipments it does not carry: it names their carrier and audits freight.
    "tms": ["transport_planning", "carried_shipments", "freight_charges", "freight_settlement"],
    "customer": ["own_orders"],
    "shop": ["shop_orders"],
}

SCOPE_CHOICES = [(name, f"{name}: {scope.label}") for name, scope in SCOPES.items()]


def default_scopes(kind: str) -> list[str]:
    """The scopes a new token or channel of a partner of ``kind`` starts with."""
    return list(DEFAULT_SCOPES.get(kind, []))


def effective_scopes(*granted: list[str]) -> list[str]:
    """What a sender may do when several grants apply (a token on a channel): what all allow."""
    allowed = set.intersection(*(set(names) for names in granted))
    return [name for name in SCOPES if name in allowed]


def sender_scopes(kind: str, *grants: list[str] | None) -> list[str]:
    """What a partner of ``kind`` may send through these grants (its token's and its channel's
    scopes; ``None`` for one that was never set, which stands for the kind's defaults)."""
    given = [default_scopes(kind) if names is None else names for names in grants]
    return effective_scopes(*given) if given else default_scopes(kind)

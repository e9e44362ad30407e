"""A realistic demo world for ``manage.py seed_demo``, built only through ``apply_events``.

Partners and their channels are configuration and are written directly. Every order, shipment,
milestone, invoice and freight charge comes from canonical events, sent the way each partner would
send them: the ERP creates and invoices orders, warehouses pick, pack and ship, the TMS assigns
tracking and audits freight, carriers report checkpoints and bill.

The world is a function of the seed and the order count only. Its times are placed relative to
"now", so the demo always looks current, while its event ids never depend on "now": seeding again
applies nothing new.
"""

import random
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Count
from django.utils import timezone
from tqdm import tqdm

from apps.partners.models import Channel, Partner
from apps.partners.services import partner_upsert
from apps.timeline.events import CanonicalEvent, EventKind, EventSource, parse_events
from apps.timeline.models import Milestone, Order, OrderStage, ParkedEvent, Shipment
from apps.timeline.services import apply_events

DEFAULT_ORDERS = 300
DEFAULT_SEED = 1729
MIN_ORDERS = 30
APPLY_BATCH_SIZE = 500

K = EventKind
S = OrderStage
CENT = Decimal("0.01")


# --- the partners: configuration, written directly ---------------------------------------------


@dataclass(frozen=True)
class Place:
    city: str
    country: str
    time_zone: str
    state: str | None = None
    name: str | None = None

    def location(self) -> dict[str, str]:
        fields = {"name": self.name, "city": self.city, "state": self.state, "country": self.country}
        return {key: value for key, value in fields.items() if value}

    def local(self, at: datetime) -> datetime:
        return at.astimezone(ZoneInfo(self.time_zone))


@dataclass(frozen=True)
class ChannelSpec:
    code: str
    name: str
    format: str


@dataclass(frozen=True)
class PartnerSpec:
    code: str
    kind: str
    name: str
    region: str
    time_zone: str
    edi_ids: tuple[tuple[str, str], ...]
    channels: tuple[ChannelSpec, ...]


F = Channel.Format
P = Partner.Kind
ERP_CHANNEL = ChannelSpec("erp-api", "ERP business events", F.API)
TMS_CHANNEL = ChannelSpec("tms-api", "TMS shipment events", F.API)
AUDIT_CHANNEL = ChannelSpec("freight-audit", "Freight audit results", F.CSV)
WMS_CHANNEL = ChannelSpec("wms-api", "WMS order events", F.API)
ASN_CHANNEL = ChannelSpec("edi-856", "Ship notices (X12 856)", F.X12)
DESADV_CHANNEL = ChannelSpec("desadv", "Despatch advice (EDIFACT DESADV)", F.EDIFACT)
STOCK_CHANNEL = ChannelSpec("inventory-csv", "Nightly stock file", F.CSV)


def _carrier_channels(mode: str) -> tuple[ChannelSpec, ChannelSpec]:
    """The carrier's (tracking, billing) channels: parcel webhooks, LTL X12, ocean and EU EDIFACT."""
    if mode == "parcel":
        return ChannelSpec("tracking-hook", "Tracking webhook", F.WEBHOOK), ChannelSpec(
            "invoice-csv", "Weekly freight invoice", F.CSV
        )
    if mode == "ltl":
        return ChannelSpec("edi-214", "Shipment status (X12 214)", F.X12), ChannelSpec(
            "edi-210", "Freight invoice (X12 210)", F.X12
        )
    return ChannelSpec("iftsta", "Status (EDIFACT IFTSTA)", F.EDIFACT), ChannelSpec(
        "invoic", "Freight invoice (EDIFACT INVOIC)", F.EDIFACT
    )


@dataclass(frozen=True)
class Warehouse:
    code: str
    name: str
    place: Place
    asn_channel: ChannelSpec
    edi_id: str

    def spec(self) -> PartnerSpec:
        region = "EU" if self.place.country == "NL" else "US"
        return PartnerSpec(
            self.code,
            P.WAREHOUSE,
            self.name,
            region,
            self.place.time_zone,
            (("ZZ", self.edi_id),),
            (WMS_CHANNEL, self.asn_channel, STOCK_CHANNEL),
        )


@dataclass(frozen=True)
class Carrier:
    code: str
    name: str
    mode: str  # parcel, ltl or ocean: decides references, channels and status codes
    region: str
    time_zone: str
    transit_hours: tuple[float, float]
    freight: tuple[int, int]
    currency: str
    delay_reasons: tuple[str, ...]
    # The transit time the carrier quotes at pickup on every lane (its estimate until a delay).
    quoted_hours: float
    # Freight carriers stand still at weekends: their trucks wait for Monday, and their quotes count so.
    delivers_at_weekends: bool = True

    @property
    def tracking_channel(self) -> ChannelSpec:
        return _carrier_channels(self.mode)[0]

    @property
    def billing_channel(self) -> ChannelSpec:
        return _carrier_channels(self.mode)[1]

    def spec(self) -> PartnerSpec:
        return PartnerSpec(
            self.code,
            P.CARRIER,
            self.name,
            self.region,
            self.time_zone,
            (("02", self.code),),
            _carrier_channels(self.mode),
        )


@dataclass(frozen=True)
class Product:
    sku: str
    uom: str
    price: Decimal


@dataclass(frozen=True)
class Customer:
    code: str
    name: str
    region: str
    time_zone: str
    currency: str
    duns: str
    inbound: ChannelSpec
    warehouse: Warehouse
    carriers: tuple[Carrier, ...]
    route: tuple[Place, ...]  # hubs between the warehouse and the customer's doors
    ship_to: tuple[Place, ...]
    products: tuple[Product, ...]
    po_prefix: str
    share: int  # relative number of orders
    bulk: int = 1  # quantity multiplier: ocean customers buy by the container
    transit_factor: float = 1.0  # the lane from its warehouse: slower or faster than the carrier's usual

    def spec(self) -> PartnerSpec:
        return PartnerSpec(
            self.code, P.CUSTOMER, self.name, self.region, self.time_zone, (("01", self.duns),), (self.inbound,)
        )


def _product(sku: str, uom: str, price: str) -> Product:
    return Product(sku, uom, Decimal(price))


HOUSEWARES = (
    _product("HW-10231", "EA", "18.90"),
    _product("HW-10475", "EA", "42.50"),
    _product("HW-11802", "CS", "96.00"),
    _product("HW-12030", "EA", "7.25"),
    _product("HW-12991", "EA", "129.00"),
    _product("HW-13310", "CS", "54.00"),
)
GROCERY = (
    _product("GR-20014", "CS", "23.40"),
    _product("GR-20177", "CS", "31.80"),
    _product("GR-20560", "CS", "12.60"),
    _product("GR-21033", "CS", "44.10"),
    _product("GR-21208", "CS", "19.95"),
)
OUTDOOR = (
    _product("OD-30102", "EA", "89.00"),
    _product("OD-30418", "EA", "249.00"),
    _product("OD-30577", "EA", "34.50"),
    _product("OD-31020", "EA", "15.75"),
    _product("OD-31244", "CS", "72.00"),
    _product("OD-31590", "EA", "399.00"),
)

DC_RTM = Warehouse(
    "DC-RTM",
    "DC Rotterdam (EU)",
    Place("Rotterdam", "NL", "Europe/Amsterdam", state="ZH", name="DC Rotterdam"),
    DESADV_CHANNEL,
    "CTRTMWMS",
)
DC_RNO = Warehouse(
    "DC-RNO",
    "DC Reno (US West)",
    Place("Reno", "US", "America/Los_Angeles", state="NV", name="DC Reno"),
    ASN_CHANNEL,
    "CTRNOWMS",
)
DC_ATL = Warehouse(
    "DC-ATL",
    "DC Atlanta (US East)",
    Place("McDonough", "US", "America/New_York", state="GA", name="DC Atlanta"),
    ASN_CHANNEL,
    "CTATLWMS",
)
WAREHOUSES = (DC_RTM, DC_RNO, DC_ATL)

US_PARCEL_DELAYS = ("Weather delay at hub", "Sorting backlog at hub", "Late trailer arrival at hub")
SWPX = Carrier(
    "SWPX",
    "Swiftpost Parcel",
    "parcel",
    "US",
    "America/Chicago",
    (30, 90),
    (14, 95),
    "USD",
    US_PARCEL_DELAYS,
    quoted_hours=48,
)
EUPL = Carrier(
    "EUPL",
    "EuroPost Logistics",
    "parcel",
    "EU",
    "Europe/Amsterdam",
    (18, 48),
    (9, 48),
    "EUR",
    ("Hub capacity exceeded", "Address correction required", "Weather delay at hub"),
    quoted_hours=24,
)
NRDL = Carrier(
    "NRDL",
    "Nordline Road Freight",
    "ltl",
    "EU",
    "Europe/Berlin",
    (24, 60),
    (120, 640),
    "EUR",
    ("Missed groupage connection", "Driver hours exceeded", "Traffic congestion on A3"),
    quoted_hours=48,
    delivers_at_weekends=False,
)
RDLN = Carrier(
    "RDLN",
    "Redline Freight LTL",
    "ltl",
    "US",
    "America/Chicago",
    (48, 120),
    (180, 1250),
    "USD",
    ("Missed linehaul connection", "Weather: winter storm on I-81", "Equipment breakdown"),
    quoted_hours=72,
    delivers_at_weekends=False,
)
BLWT = Carrier(
    "BLWT",
    "Bluewater Forwarding",
    "ocean",
    "Global",
    "America/Los_Angeles",
    (420, 600),
    (2400, 4800),
    "USD",
    ("Vessel rolled to next sailing", "Port congestion at destination", "Customs inspection hold"),
    quoted_hours=456,
)
CARRIERS = (SWPX, EUPL, NRDL, RDLN, BLWT)


@dataclass(frozen=True)
class Disruption:
    """A lane that slowed down for a while: its transit times stretched by ``factor`` for the
    shipments picked up from ``starts`` to ``ends`` days before now."""

    carrier: str
    warehouse: str
    region: str
    starts: float
    ends: float
    factor: float


# Redline's trucks from Atlanta to the North-East (Harborline) lost a linehaul for under three
# weeks: 30 % slower, until twelve days ago.
DISRUPTION = Disruption("RDLN", "DC-ATL", "US-Northeast", starts=30, ends=12, factor=1.3)


def _us(city: str, state: str, zone: str = "America/New_York", name: str | None = None) -> Place:
    return Place(city, "US", zone, state=state, name=name)


CUSTOMERS = (
    Customer(
        "BERGMANN",
        "Bergmann Haushaltswaren GmbH",
        "EU-Central",
        "Europe/Berlin",
        "EUR",
        "315728840",
        ChannelSpec("orders", "Purchase orders (EDIFACT ORDERS)", F.EDIFACT),
        DC_RTM,
        (EUPL, NRDL),
        (Place("Venlo", "NL", "Europe/Amsterdam"), Place("Duisburg", "DE", "Europe/Berlin")),
        (
            Place("Köln", "DE", "Europe/Berlin"),
            Place("Düsseldorf", "DE", "Europe/Berlin"),
            Place("Frankfurt am Main", "DE", "Europe/Berlin"),
        ),
        HOUSEWARES,
        "45",
        share=6,
        transit_factor=0.8,
    ),
    Customer(
        "HARBORLINE",
        "Harborline Grocers Inc.",
        "US-Northeast",
        "America/New_York",
        "USD",
        "079244613",
        ChannelSpec("edi-850", "Purchase orders (X12 850)", F.X12),
        DC_ATL,
        (RDLN, SWPX),
        (_us("Charlotte", "NC"), _us("Harrisburg", "PA"), _us("Hartford", "CT")),
        (_us("Boston", "MA"), _us("Providence", "RI"), _us("Worcester", "MA")),
        GROCERY,
        "HL",
        share=6,
        transit_factor=1.25,
    ),
    Customer(
        "SUNCREST",
        "Suncrest Outdoor Supply Co.",
        "US-Mountain",
        "America/Denver",
        "USD",
        "620418097",
        ChannelSpec("edi-850", "Purchase orders (X12 850)", F.X12),
        DC_RNO,
        (SWPX, RDLN),
        (_us("Salt Lake City", "UT", "America/Denver"), _us("Grand Junction", "CO", "America/Denver")),
        (
            _us("Denver", "CO", "America/Denver"),
            _us("Boulder", "CO", "America/Denver"),
            _us("Colorado Springs", "CO", "America/Denver"),
        ),
        OUTDOOR,
        "SC",
        share=5,
        transit_factor=0.85,
    ),
    Customer(
        "MAPLELEAF",
        "Maple Leaf Outfitters Ltd.",
        "CA-East",
        "America/Toronto",
        "CAD",
        "248113562",
        ChannelSpec("orders-api", "Orders API", F.API),
        DC_ATL,
        (RDLN, SWPX),
        (_us("Knoxville", "TN"), _us("Buffalo", "NY"), Place("Fort Erie", "CA", "America/Toronto", state="ON")),
        (
            Place("Toronto", "CA", "America/Toronto", state="ON"),
            Place("Mississauga", "CA", "America/Toronto", state="ON"),
            Place("Ottawa", "CA", "America/Toronto", state="ON"),
        ),
        OUTDOOR[:4] + HOUSEWARES[:2],
        "ML",
        share=4,
        transit_factor=1.4,  # a border crossing
    ),
    Customer(
        "KOWHAI",
        "Kowhai Trading Ltd",
        "APAC",
        "Pacific/Auckland",
        "USD",
        "590337214",
        ChannelSpec("orders-csv", "Order file (CSV)", F.CSV),
        DC_RNO,
        (BLWT,),
        (
            _us("Oakland", "CA", "America/Los_Angeles", name="Port of Oakland"),
            Place("Auckland", "NZ", "Pacific/Auckland", name="Ports of Auckland"),
        ),
        (
            Place("Auckland", "NZ", "Pacific/Auckland"),
            Place("Hamilton", "NZ", "Pacific/Auckland"),
            Place("Tauranga", "NZ", "Pacific/Auckland"),
        ),
        HOUSEWARES[:3] + OUTDOOR[2:5],
        "KT",
        share=2,
        bulk=8,
    ),
)

ERP = PartnerSpec("ERP", P.ERP, "Corporate ERP", "Global", "America/Chicago", (("ZZ", "CTOWERERP"),), (ERP_CHANNEL,))
TMS = PartnerSpec(
    "TMS",
    P.TMS,
    "Transport Management System",
    "Global",
    "America/Chicago",
    (("ZZ", "CTOWERTMS"),),
    (TMS_CHANNEL, AUDIT_CHANNEL),
)
PARTNERS: tuple[PartnerSpec, ...] = (
    *(customer.spec() for customer in CUSTOMERS),
    *(warehouse.spec() for warehouse in WAREHOUSES),
    *(carrier.spec() for carrier in CARRIERS),
    ERP,
    TMS,
)
HEADQUARTERS = Place("Chicago", "US", "America/Chicago", state="IL")


def partners_upsert() -> int:
    """Create or update every demo partner, its EDI identifiers and its inbound channels."""
    for spec in PARTNERS:
        partner, _ = partner_upsert(
            code=spec.code,
            kind=spec.kind,
            name=spec.name,
            region=spec.region,
            time_zone=spec.time_zone,
            edi_ids=list(spec.edi_ids),
        )
        for channel in spec.channels:
            Channel.objects.update_or_create(
                partner=partner,
                code=channel.code,
                defaults={"name": channel.name, "format": channel.format, "direction": Channel.Direction.INBOUND},
            )
    return len(PARTNERS)


ROLE_USERS = {
    "Customer Service": "cs",
    "Finance": "finance",
    "Supply Chain": "supply",
    "Integration Admin": "integration",
}


def demo_user_upsert(*, username: str, password: str) -> AbstractBaseUser:
    """Create or update the demo login: an active superuser with this password."""
    user, _ = get_user_model().objects.get_or_create(username=username)
    user.is_active = user.is_staff = user.is_superuser = True
    user.set_password(password)
    user.save()
    return user


def demo_role_users_upsert(*, prefix: str, password: str) -> list[AbstractBaseUser]:
    """One demo login per role (``demo-finance``, ...), each in its role's group only."""
    from apps.exceptions.roles import roles_ensure

    groups = roles_ensure()
    users = []
    for role, suffix in ROLE_USERS.items():
        user, _ = get_user_model().objects.get_or_create(username=f"{prefix}-{suffix}")
        user.is_active, user.is_staff, user.is_superuser = True, role == "Integration Admin", False
        user.set_password(password)
        user.save()
        user.groups.set([groups[role]])
        users.append(user)
    return users


# --- reference numbers that look like the real thing -------------------------------------------


def _s10_tracking(serial: int, origin: str) -> str:
    """A UPU S10 item id (postal parcels): two letters, eight digits, check digit, country."""
    digits = f"{serial:08d}"
    check = 11 - sum(int(d) * w for d, w in zip(digits, (8, 6, 4, 2, 3, 5, 9, 7), strict=True)) % 11
    check = {10: 0, 11: 5}.get(check, check)
    return f"CX{digits}{check}{origin}"


def _iso6346_container(owner: str, serial: int) -> str:
    """An ISO 6346 container number: owner code, category U, six digits, check digit."""
    letters = [n for n in range(10, 39) if n % 11]
    values = {chr(ord("A") + i): letters[i] for i in range(26)}
    code = f"{owner}U{serial:06d}"
    total = sum((values[c] if c.isalpha() else int(c)) * 2**i for i, c in enumerate(code))
    return f"{code}{total % 11 % 10}"


def _gs1_check(digits: str) -> str:
    """A GS1 number (GLN, SSCC, VICS bill of lading) with its mod-10 check digit."""
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(digits)))
    return f"{digits}{(10 - total % 10) % 10}"


# --- the plan: who orders what, and how far each order got --------------------------------------

STAGE_WEIGHTS = {
    S.CREATED: 4,
    S.RELEASED: 4,
    S.ALLOCATED: 3,
    S.PICKED: 4,
    S.PACKED: 3,
    S.SHIPPED: 18,
    S.PARTIALLY_DELIVERED: 5,
    S.DELIVERED: 12,
    S.INVOICED: 13,
    S.POSTED: 28,
    S.CANCELLED: 6,
}
PREP_FLOW = (K.ORDER_RELEASED, K.ORDER_ALLOCATED, K.ORDER_PICKED, K.ORDER_PACKED)
PREP_DEPTH = {S.CREATED: 0, S.RELEASED: 1, S.ALLOCATED: 2, S.PICKED: 3, S.PACKED: 4}
PREP_GAP_HOURS = {
    K.ORDER_RELEASED: (0.3, 20),
    K.ORDER_ALLOCATED: (0.05, 3),
    K.ORDER_PICKED: (1, 26),
    K.ORDER_PACKED: (0.2, 4),
}
DELIVERED_STAGES = (S.DELIVERED, S.INVOICED, S.POSTED)
# Freight by how far the shipment's orders got: bills come after delivery and settle weeks later.
FREIGHT_FLOWS_BY_STAGE = (S.PARTIALLY_DELIVERED, S.DELIVERED, S.INVOICED, S.POSTED)
_POSTED, _VALIDATED, _SETTLED = K.FREIGHT_CHARGE_POSTED, K.FREIGHT_CHARGE_VALIDATED, K.FREIGHT_CHARGE_SETTLED
FREIGHT_FLOWS: tuple[tuple[tuple[EventKind, ...], ...], ...] = (
    ((),),
    ((), (_POSTED,), (_POSTED, _VALIDATED)),
    ((_POSTED,), (_POSTED, _VALIDATED), (_POSTED, _VALIDATED)),
    ((_POSTED, _VALIDATED, _SETTLED), (_POSTED, _VALIDATED, _SETTLED), (_POSTED, _VALIDATED)),
)
# How far an in-flight shipment got, with weights, for orders that are shipped but not delivered.
IN_FLIGHT_REACH = {"manifested": 1, "tracking_assigned": 1.5, "picked_up": 2, "in_transit": 5, "out_for_delivery": 2}
# Hours since the story's last event, by the stage it ended in: how "live" each order looks.
SLACK_HOURS = {
    S.CREATED: (0.2, 8),
    S.RELEASED: (1, 40),
    S.ALLOCATED: (0.5, 20),
    S.PICKED: (0.5, 30),
    S.PACKED: (0.5, 12),
    S.SHIPPED: (0.3, 16),
    S.PARTIALLY_DELIVERED: (1, 30),
    S.DELIVERED: (3, 100),
    S.INVOICED: (2, 140),
    S.POSTED: (12, 600),
    S.CANCELLED: (2, 200),
}
LEAD_DAYS = {"parcel": 4, "ltl": 6, "ocean": 35}

CANCEL_REASONS = ("Customer request", "Credit hold", "Duplicate order", "Item discontinued")
ATTEMPT_REASONS = ("Consignee closed", "Recipient not available", "No dock appointment", "Access restricted")
DAMAGE_REASONS = ("Crushed cartons on arrival", "Shrink-wrap torn, 2 cases wet", "Forklift damage noted on POD")
REFUSAL_REASONS = ("Consignee refused: duplicate shipment", "Consignee refused: arrived outside delivery window")
HOLD_REASONS = ("Quantity variance vs. shipment", "Price mismatch vs. PO", "Missing proof of delivery")
DISPUTE_REASONS = (
    "Accessorial not authorised: liftgate",
    "Rate above contract",
    "Residential surcharge on a commercial address",
    "Detention not supported by gate records",
)
RETURN_REASONS = ("Damaged in transit", "Wrong item shipped", "Customer overstock")
ADJUST_REASONS = ("Cycle count", "Damaged in handling", "Found stock", "Receiving correction")
# How far the ERP's book stock of a SKU is from the warehouse's count: most agree, or nearly;
# some carry shrinkage or receipts never booked.
BOOK_DRIFTS = (0.0, 0.0, 0.0, 0.0, 0.004, -0.006, 0.04, -0.07, 0.12)
SIGNERS = ("J. MILLER", "A. SCHMIDT", "R. PATEL", "L. NGUYEN", "M. ROSSI", "K. TAMA", "D. OKAFOR")


@dataclass
class Line:
    sku: str
    quantity: int
    uom: str
    price: Decimal


@dataclass
class Step:
    """One thing that happens: an offset inside its story until the story is placed on the calendar."""

    kind: EventKind
    offset: timedelta
    place: Place | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    at: datetime | None = None


@dataclass(eq=False)
class OrderPlan:
    key: int
    customer: Customer
    stage: str
    lines: list[Line]
    ship_to: Place
    late: bool = False
    at_risk: bool = False
    cancel_depth: int = 0
    invoice_flow: tuple[EventKind, ...] = ()
    hold_reason: str = ""
    return_flow: tuple[EventKind, ...] = ()
    shipments: list["ShipmentPlan"] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)
    promised_at: datetime | None = None
    number: str = ""
    po: str = ""
    invoice: str = ""
    rma: str = ""

    @property
    def total(self) -> Decimal:
        return sum((line.price * line.quantity for line in self.lines), Decimal(0)).quantize(CENT)

    def first(self, kind: EventKind) -> Step | None:
        return next((step for step in self.steps if step.kind == kind), None)


@dataclass(eq=False)
class ShipmentPlan:
    key: int
    carrier: Carrier
    parts: list[tuple[OrderPlan, list[Line]]]
    reach: str
    delayed: bool = False
    attempted: bool = False
    damaged: bool = False
    refused: bool = False
    resent: bool = False  # the warehouse's ship notice arrives last: carrier events wait for it
    freight_flow: tuple[EventKind, ...] = ()
    quote: Decimal = Decimal(0)  # the freight the TMS was quoted
    accessorial: Decimal = Decimal(0)  # what the carrier billed above the quote
    steps: list[Step] = field(default_factory=list)
    eta_offset: timedelta = timedelta(0)
    next_offset: timedelta | None = None  # when the first step it has not reached yet is due
    eta: datetime | None = None
    number: str = ""
    bol: str = ""
    tracking: str = ""
    carrier_ref: tuple[str, str] | None = None  # PRO or container, beside the tracking number
    charge_number: str = ""

    @property
    def orders(self) -> list[OrderPlan]:
        return [order for order, _ in self.parts]

    @property
    def warehouse(self) -> Warehouse:
        return self.parts[0][0].customer.warehouse

    @property
    def ship_to(self) -> Place:
        return self.parts[0][0].ship_to

    def first(self, kind: EventKind) -> Step | None:
        return next((step for step in self.steps if step.kind == kind), None)


@dataclass(eq=False)
class Story:
    """Orders told together: one order and its shipments, or the orders one shipment consolidates."""

    orders: list[OrderPlan]
    shipments: list[ShipmentPlan]
    origin: datetime | None = None  # where the plan placed it, before the calendar

    def steps(self) -> Iterator[Step]:
        for subject in (*self.orders, *self.shipments):
            yield from subject.steps


def _hours(rng: random.Random, low: float, high: float) -> timedelta:
    return timedelta(hours=rng.uniform(low, high))


def _some(rng: random.Random, pool: Sequence[Any], share: float, minimum: int = 1) -> list[Any]:
    count = min(len(pool), max(minimum, round(len(pool) * share)))
    return rng.sample(list(pool), count)


def _stages(count: int, rng: random.Random) -> list[str]:
    """Stages for ``count`` orders in proportion to their weights, every stage at least once."""
    total = sum(STAGE_WEIGHTS.values())
    exact = {stage: count * weight / total for stage, weight in STAGE_WEIGHTS.items()}
    quota = {stage: max(1, int(share)) for stage, share in exact.items()}
    by_remainder = sorted(exact, key=lambda stage: exact[stage] - int(exact[stage]), reverse=True)
    for stage in by_remainder[: max(0, count - sum(quota.values()))]:
        quota[stage] += 1
    while sum(quota.values()) > count:
        quota[max(quota, key=quota.__getitem__)] -= 1
    stages = [stage for stage, number in quota.items() for _ in range(number)]
    rng.shuffle(stages)
    return stages


def _new_order(key: int, stage: str, rng: random.Random) -> OrderPlan:
    customer = rng.choices(CUSTOMERS, weights=[c.share for c in CUSTOMERS])[0]
    lines = []
    for product in rng.sample(customer.products, rng.randint(1, 4)):
        quantity = rng.randint(4, 80) if product.uom == "CS" else rng.randint(2, 60)
        lines.append(Line(product.sku, quantity * customer.bulk, product.uom, product.price))
    order = OrderPlan(key, customer, stage, lines, rng.choice(customer.ship_to))
    if stage == S.CANCELLED:
        order.cancel_depth = rng.randint(0, 2)
    return order


def _consolidate(orders: list[OrderPlan], share: float, rng: random.Random) -> list[list[OrderPlan]]:
    """Groups of two or three orders of one customer that ship together."""
    by_customer: dict[str, list[OrderPlan]] = defaultdict(list)
    for order in orders:
        by_customer[order.customer.code].append(order)
    target, taken, groups = max(2, round(len(orders) * share)), 0, []
    for same_customer in sorted(by_customer.values(), key=len, reverse=True):
        while len(same_customer) >= 2 and taken < target:
            size = min(rng.choice((2, 2, 3)), len(same_customer))
            groups.append([same_customer.pop() for _ in range(size)])
            taken += size
    return groups


def _split_lines(lines: list[Line], count: int, rng: random.Random) -> list[list[Line]]:
    """Spread an order over ``count`` shipments; with too few lines, the last one backorders a part."""
    if len(lines) >= count:
        shuffled = rng.sample(lines, len(lines))
        return [shuffled[i::count] for i in range(count)]
    first = lines[0]
    back = max(1, first.quantity // 3)
    head = Line(first.sku, first.quantity - back, first.uom, first.price)
    return [[head, *lines[1:]], [Line(first.sku, back, first.uom, first.price)]]


class _Planner:
    """Builds the stories of one demo: which orders ship how, and what goes wrong where."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.shipment_keys = iter(range(1_000_000))

    def shipment(self, parts: list[tuple[OrderPlan, list[Line]]], reach: str) -> ShipmentPlan:
        customer = parts[0][0].customer
        plan = ShipmentPlan(next(self.shipment_keys), self.rng.choice(customer.carriers), parts, reach)
        for order, _ in parts:
            order.shipments.append(plan)
        return plan

    def stories(self, orders: list[OrderPlan]) -> list[Story]:
        rng = self.rng
        shipped = [o for o in orders if o.stage == S.SHIPPED]
        delivered = [o for o in orders if o.stage in DELIVERED_STAGES]
        stories = [Story([o], []) for o in orders if o.stage in PREP_DEPTH or o.stage == S.CANCELLED]
        # Shipped orders consolidate only when there are enough left to show every in-flight trouble alone.
        for pool, reach in ((shipped if len(shipped) >= 12 else [], "in_flight"), (delivered, "delivered")):
            for group in _consolidate(pool, 0.2, rng):
                for order in group[1:]:
                    order.ship_to = group[0].ship_to
                    pool.remove(order)
                pool.remove(group[0])
                stories.append(Story(group, [self.shipment([(o, o.lines) for o in group], reach)]))
        split = [o for o in orders if o.stage == S.PARTIALLY_DELIVERED] + _some(rng, delivered, 0.12)
        for order in split:
            parts = _split_lines(order.lines, rng.choice((2, 2, 3)), rng)
            reaches = ["delivered"] + ["in_flight" if order.stage == S.PARTIALLY_DELIVERED else "delivered"] * (
                len(parts) - 1
            )
            stories.append(
                Story([order], [self.shipment([(order, lines)], r) for lines, r in zip(parts, reaches, strict=True)])
            )
        for order in [o for o in shipped + delivered if o not in split]:
            reach = "in_flight" if order.stage == S.SHIPPED else "delivered"
            stories.append(Story([order], [self.shipment([(order, order.lines)], reach)]))
        stories.sort(key=lambda story: story.orders[0].key)
        return stories

    def trouble(self, stories: list[Story]) -> None:
        """Decide what goes wrong: no tracking, delays, failed attempts, refusals, damage, late ASNs."""
        rng = self.rng
        shipments = [s for story in stories for s in story.shipments]
        in_flight = [s for s in shipments if s.reach == "in_flight"]
        single_shipped = [s for s in in_flight if len(s.parts) == 1 and s.orders[0].stage == S.SHIPPED]
        forced = ["in_transit", "in_transit", "manifested", "refused", "delivery_attempted"]
        for shipment, reach in zip(rng.sample(single_shipped, len(single_shipped)), forced, strict=False):
            shipment.reach = reach
        for shipment in in_flight:
            if shipment.reach == "in_flight":
                shipment.reach = rng.choices(list(IN_FLIGHT_REACH), weights=list(IN_FLIGHT_REACH.values()))[0]
            shipment.attempted = shipment.reach == "delivery_attempted"
            shipment.refused = shipment.reach == "refused"
        moving = [s for s in in_flight if s.reach in ("in_transit", "out_for_delivery", "delivery_attempted")]
        for shipment in _some(rng, moving, 0.3):
            shipment.delayed = True
        transit = [s for s in single_shipped if s.reach == "in_transit"]
        rest = transit[2:]
        late = transit[:1] + _some(rng, rest, 0.2, minimum=0)
        at_risk = transit[1:2] + _some(rng, [s for s in rest if s not in late], 0.2, minimum=0)
        for shipment in late:
            shipment.delayed = shipment.orders[0].late = True
        for shipment in at_risk:
            shipment.delayed = shipment.orders[0].at_risk = True
        far_enough = [s for s in single_shipped if s.reach not in ("manifested", "tracking_assigned")]
        for shipment in _some(rng, far_enough, 0.1):
            shipment.resent = True

        done = [s for s in shipments if s.reach == "delivered"]
        for shipment in done:
            shipment.reach = "pod_received" if rng.random() < 0.8 else "delivered"
        for shipment in _some(rng, done, 0.12):
            shipment.attempted = True
        for shipment in _some(rng, done, 0.2, minimum=0):
            shipment.delayed = True
        for shipment in _some(rng, done, 0.06):
            shipment.damaged = True
        delivered_orders = sorted(
            {o for s in done for o in s.orders if o.stage in DELIVERED_STAGES}, key=lambda o: o.key
        )
        for order in _some(rng, delivered_orders, 0.15):
            order.late = True
            for shipment in order.shipments:
                shipment.delayed = True

    def freight(self, stories: list[Story]) -> None:
        """Carriers bill delivered shipments; some bill accessorials above the quote, some get disputed."""
        rng = self.rng
        delivered = [s for story in stories for s in story.shipments if s.reach in ("delivered", "pod_received")]
        for shipment in delivered:
            least_advanced = min(FREIGHT_FLOWS_BY_STAGE.index(o.stage) for o in shipment.orders)
            shipment.freight_flow = rng.choice(FREIGHT_FLOWS[least_advanced])
            shipment.quote = Decimal(rng.randint(*shipment.carrier.freight)) + Decimal(rng.randint(0, 99)) / 100
            if rng.random() < 0.15:
                shipment.accessorial = Decimal(rng.choice((45, 75, 95, 125)))
        invoiced = [s for s in delivered if all(o.stage in (S.INVOICED, S.POSTED) for o in s.orders)]
        for index, shipment in enumerate(_some(rng, invoiced, 0.12)):
            settled = index % 2 == 1 and all(o.stage == S.POSTED for o in shipment.orders)
            shipment.freight_flow = (K.FREIGHT_CHARGE_POSTED, K.FREIGHT_CHARGE_DISPUTED) + (
                (K.FREIGHT_CHARGE_SETTLED,) if settled else ()
            )
            shipment.accessorial = Decimal(rng.choice((75, 95, 150, 210)))

    def invoices(self, stories: list[Story]) -> None:
        """Invoice flows by stage, holds with the reason that caused them, and returns."""
        rng = self.rng
        orders = [o for story in stories for o in story.orders]
        invoiced = [o for o in orders if o.stage == S.INVOICED]
        posted = [o for o in orders if o.stage == S.POSTED]
        held = (K.INVOICE_GENERATED, K.INVOICE_HELD)
        for order in invoiced:
            order.invoice_flow = (K.INVOICE_GENERATED,)
        for index, order in enumerate(_some(rng, invoiced, 0.5, minimum=2)):
            order.invoice_flow = (*held, K.INVOICE_RELEASED) if index % 3 == 1 else held
        for order in posted:
            order.invoice_flow = (K.INVOICE_GENERATED, K.INVOICE_POSTED)
        for order in _some(rng, posted, 0.15):
            order.invoice_flow = (*held, K.INVOICE_RELEASED, K.INVOICE_POSTED)
        for order in [o for o in orders if K.INVOICE_HELD in o.invoice_flow]:
            order.hold_reason = _hold_reason(order, rng)
        for index, order in enumerate(_some(rng, invoiced + posted, 0.07)):
            order.return_flow = (K.RETURN_AUTHORIZED,) if index % 3 == 2 else (K.RETURN_AUTHORIZED, K.RETURN_RECEIVED)


def _hold_reason(order: OrderPlan, rng: random.Random) -> str:
    if any(s.damaged for s in order.shipments):
        return "Damage reported on delivery"
    if any(K.FREIGHT_CHARGE_DISPUTED in s.freight_flow for s in order.shipments):
        return "Freight charge disputed"
    return rng.choice(HOLD_REASONS)


# --- the schedule: when each step happens ------------------------------------------------------


def _prep_steps(order: OrderPlan, start: timedelta, rng: random.Random) -> list[Step]:
    warehouse = order.customer.warehouse.place
    steps, at = [Step(K.ORDER_CREATED, start)], start
    depth = order.cancel_depth if order.stage == S.CANCELLED else PREP_DEPTH.get(order.stage, len(PREP_FLOW))
    for kind in PREP_FLOW[:depth]:
        at += _hours(rng, *PREP_GAP_HOURS[kind])
        steps.append(Step(kind, at, None if kind == K.ORDER_RELEASED else warehouse))
    if order.stage == S.CANCELLED:
        steps.append(Step(K.ORDER_CANCELLED, at + _hours(rng, 1, 48), detail={"reason": rng.choice(CANCEL_REASONS)}))
    return steps


def _carrier_steps(shipment: ShipmentPlan, start: timedelta, rng: random.Random) -> list[Step]:
    """The shipment's whole life from manifest to proof of delivery, then cut where it got to."""
    carrier, origin, destination = shipment.carrier, shipment.warehouse.place, shipment.ship_to
    steps = [Step(K.SHIPMENT_MANIFESTED, start, origin)]
    steps.append(Step(K.SHIPMENT_TRACKING_ASSIGNED, start + _hours(rng, 0.1, 1.5), origin))
    at = picked_up = start + _hours(rng, 2, 10)
    steps.append(Step(K.SHIPMENT_PICKED_UP, at, origin))
    customer = shipment.parts[0][0].customer
    route = customer.route
    leg = _hours(rng, *carrier.transit_hours) * customer.transit_factor / (len(route) + 1)
    delayed_at = rng.randrange(len(route)) if shipment.delayed else None
    for index, hub in enumerate(route):
        at += leg * rng.uniform(0.8, 1.2)
        steps.append(Step(K.SHIPMENT_IN_TRANSIT, at, hub))
        if index == delayed_at:
            steps.append(
                Step(K.SHIPMENT_DELAYED, at + _hours(rng, 1, 4), hub, {"reason": rng.choice(carrier.delay_reasons)})
            )
            steps.append(Step(K.SHIPMENT_ETA_UPDATED, at + _hours(rng, 4, 6), hub))
            delay = _hours(rng, 30, 72) if any(o.late for o in shipment.orders) else _hours(rng, 12, 48)
            at += delay
    at += leg * rng.uniform(0.8, 1.2)
    steps.append(Step(K.SHIPMENT_OUT_FOR_DELIVERY, at, destination))
    at += _hours(rng, 1.5, 6)
    if shipment.attempted:
        steps.append(Step(K.SHIPMENT_DELIVERY_ATTEMPTED, at, destination, {"reason": rng.choice(ATTEMPT_REASONS)}))
        retry = _hours(rng, 16, 20)
        at += retry
        steps.append(Step(K.SHIPMENT_OUT_FOR_DELIVERY, at, destination))
        at += _hours(rng, 1.5, 6)
    if shipment.refused:
        steps.append(Step(K.SHIPMENT_REFUSED, at, destination, {"reason": rng.choice(REFUSAL_REASONS)}))
    else:
        steps.append(Step(K.SHIPMENT_DELIVERED, at, destination, {"signed_by": rng.choice(SIGNERS)}))
        if shipment.damaged:
            steps.append(
                Step(
                    K.SHIPMENT_DAMAGED, at + _hours(rng, 0.05, 0.5), destination, {"reason": rng.choice(DAMAGE_REASONS)}
                )
            )
        steps.append(Step(K.SHIPMENT_POD_RECEIVED, at + _hours(rng, 0.2, 30), destination))
    # The carrier's first estimate is its quote, the same on every lane: delays and failed attempts
    # are not in it; after a delay it estimates again from the actual delivery.
    shipment.eta_offset = picked_up + timedelta(hours=carrier.quoted_hours)
    for step in steps:
        if step.kind == K.SHIPMENT_ETA_UPDATED:
            step.detail["eta_offset"] = at
    reached = _reached(steps, shipment.reach, rng)
    if reached < len(steps):
        shipment.next_offset = steps[reached].offset
    return steps[:reached]


def _reached(steps: list[Step], reach: str, rng: random.Random) -> int:
    """How many of the shipment's steps have happened by now."""
    kinds = [step.kind for step in steps]
    if reach in ("pod_received", "refused"):
        return len(steps)
    if reach == "delivered":
        return kinds.index(K.SHIPMENT_POD_RECEIVED)
    if reach == "in_transit":
        floor = kinds.index(K.SHIPMENT_ETA_UPDATED) if K.SHIPMENT_ETA_UPDATED in kinds else 0
        stops = [i for i, kind in enumerate(kinds) if kind == K.SHIPMENT_IN_TRANSIT and i > floor] or [floor]
        return rng.choice(stops) + 1
    return kinds.index(EventKind(f"shipment.{reach}")) + 1


def _after_delivery_steps(order: OrderPlan, delivered: timedelta, rng: random.Random) -> list[Step]:
    steps, at = [], delivered + _hours(rng, 4, 72)
    gaps = {K.INVOICE_HELD: (0.05, 1), K.INVOICE_RELEASED: (20, 96), K.INVOICE_POSTED: (4, 48)}
    for kind in order.invoice_flow:
        at += _hours(rng, *gaps[kind]) if kind in gaps else timedelta(0)
        steps.append(Step(kind, at))
    at = delivered + _hours(rng, 72, 240)
    for kind in order.return_flow:
        place = order.customer.warehouse.place if kind == K.RETURN_RECEIVED else None
        steps.append(Step(kind, at, place, {"reason": rng.choice(RETURN_REASONS)}))
        at += _hours(rng, 72, 200)
    return steps


def _freight_steps(shipment: ShipmentPlan, delivered: timedelta, rng: random.Random) -> list[Step]:
    steps, at = [], delivered + _hours(rng, 24, 120)
    gaps = {
        K.FREIGHT_CHARGE_VALIDATED: (4, 48),
        K.FREIGHT_CHARGE_DISPUTED: (4, 48),
        K.FREIGHT_CHARGE_SETTLED: (96, 400),
    }
    for kind in shipment.freight_flow:
        at += _hours(rng, *gaps[kind]) if kind in gaps else timedelta(0)
        detail = {"reason": rng.choice(DISPUTE_REASONS)} if kind == K.FREIGHT_CHARGE_DISPUTED else {}
        steps.append(Step(kind, at, detail=detail))
    return steps


def _schedule(story: Story, now: datetime, rng: random.Random) -> None:
    """Time every step of the story, then place it so its last step happened a little before now
    (for now as a plan: ``_place`` puts it on the calendar)."""
    for index, order in enumerate(story.orders):
        order.steps = _prep_steps(order, _hours(rng, 0, 20) if index else timedelta(0), rng)
    for index, shipment in enumerate(story.shipments):
        packed = max(o.steps[-1].offset for o in shipment.orders)
        start = packed + _hours(rng, 0.5, 6) + index * _hours(rng, 24, 72)
        shipment.steps = _carrier_steps(shipment, start, rng)
    for order in story.orders:
        delivered = [s.first(K.SHIPMENT_DELIVERED) for s in order.shipments]
        if delivered and all(delivered):
            order.steps += _after_delivery_steps(order, max(step.offset for step in delivered), rng)
    for shipment in story.shipments:
        delivered_step = shipment.first(K.SHIPMENT_DELIVERED)
        if delivered_step:
            shipment.steps += _freight_steps(shipment, delivered_step.offset, rng)

    last = max(step.offset for step in story.steps())
    story.origin = now - _slack(story, last, rng) - last
    for step in story.steps():
        step.at = story.origin + step.offset


def _place(story: Story, now: datetime) -> None:
    """Put the planned story on the calendar (``_on_the_calendar``). Numbers are handed out from
    the plan before, so that they do not depend on the weekday of ``now``."""
    origin = _on_the_calendar(story, story.origin, now)
    for step in story.steps():
        step.at = origin + step.offset
        if "eta_offset" in step.detail:
            step.detail["eta"] = _whole_minutes(origin + step.detail.pop("eta_offset"))
    for shipment in story.shipments:
        shipment.eta = _whole_minutes(origin + shipment.eta_offset)


def _on_the_calendar(story: Story, origin: datetime, now: datetime) -> datetime:
    """Retime the carriers' steps where the calendar matters, once the story is placed: a weekend
    holds a freight carrier's shipment till Monday, and the disrupted lane's transit stretches.
    The steps after a delivery move with it. A story that would now end after ``now`` moves back:
    by as much as its end moved when a shipment is still on its way (retimed again from there, a
    few times at most: a shipment on its way is not left silent for days), else by whole weeks
    (its weekdays stay put). Returns the story's origin."""
    planned = [(step, step.offset, dict(step.detail)) for step in story.steps()]
    etas = {shipment: shipment.eta_offset for shipment in story.shipments}
    planned_end = max(offset for _, offset, _ in planned)

    def retimed_end(at: datetime) -> timedelta:
        for step, offset, detail in planned:
            step.offset, step.detail = offset, dict(detail)
        for shipment, eta in etas.items():
            shipment.eta_offset = eta
        moved = {shipment: _retime(shipment, at, now) for shipment in story.shipments}
        for order in story.orders:
            shift = max((moved[shipment] for shipment in order.shipments), default=timedelta(0))
            for step in order.steps:
                if step.kind.family in ("invoice", "return"):
                    step.offset += shift
        return max(step.offset for step in story.steps())

    complete = all(shipment.first(K.SHIPMENT_DELIVERED) for shipment in story.shipments)
    placed = origin
    for _ in range(CALENDAR_TRIES if not complete else 1):
        end = retimed_end(placed)
        if placed + end <= now:
            return placed
        placed -= end - planned_end
    placed = origin
    while (overflow := placed + retimed_end(placed) - now) > timedelta(0):  # the lane's pace may differ weeks back
        placed -= WEEK * -(-overflow // WEEK)
    return placed


CALENDAR_TRIES = 3
WEEK = timedelta(days=7)


def _retime(shipment: ShipmentPlan, origin: datetime, now: datetime) -> timedelta:
    """Retime one shipment's steps after pickup (see ``_on_the_calendar``); returns how much later
    it was delivered."""
    pickup = shipment.first(K.SHIPMENT_PICKED_UP)
    carrier = shipment.carrier
    if pickup is None:
        return timedelta(0)
    picked = origin + pickup.offset
    stretch = _stretch(shipment, picked, now)
    working = not carrier.delivers_at_weekends
    if working:
        shipment.eta_offset = skip_weekends(picked, carrier.quoted_hours) - origin
    if stretch == 1 and not working:
        return timedelta(0)
    new_offsets, delivered_shift = {}, timedelta(0)
    for step in shipment.steps:
        if step.offset <= pickup.offset:
            continue
        if step.kind.family != "shipment":  # freight follows the delivery
            step.offset += delivered_shift
            continue
        hours = (step.offset - pickup.offset) / timedelta(hours=1) * stretch
        at = skip_weekends(picked, hours) if working else picked + timedelta(hours=hours)
        new_offsets[step.offset] = at - origin
        if step.kind in (K.SHIPMENT_DELIVERED, K.SHIPMENT_REFUSED):
            delivered_shift = at - origin - step.offset
        step.offset = at - origin
    for step in shipment.steps:
        if "eta_offset" in step.detail:
            step.detail["eta_offset"] = new_offsets.get(step.detail["eta_offset"], step.detail["eta_offset"])
    return delivered_shift


def _stretch(shipment: ShipmentPlan, picked: datetime, now: datetime) -> float:
    d = DISRUPTION
    lane = (shipment.carrier.code, shipment.warehouse.code, shipment.parts[0][0].customer.region)
    on_lane = lane == (d.carrier, d.warehouse, d.region)
    during = now - timedelta(days=d.starts) <= picked < now - timedelta(days=d.ends)
    return d.factor if on_lane and during else 1.0


def skip_weekends(start: datetime, hours: float) -> datetime:
    """``start`` plus ``hours`` of a carrier that stands still from Saturday to Monday (UTC)."""
    at, left = start, timedelta(hours=hours)
    while True:
        monday = datetime.combine(at.date() - timedelta(days=at.weekday()), time(0), tzinfo=at.tzinfo)
        if at.weekday() >= 5:
            at = monday + WEEK
            continue
        saturday = monday + timedelta(days=5)
        if at + left < saturday:
            return at + left
        left -= saturday - at
        at = saturday


def _slack(story: Story, last: timedelta, rng: random.Random) -> timedelta:
    """How long before now the story's last step happened: before the next one is due, unless stalled."""
    if any(order.late and order.stage == S.SHIPPED for order in story.orders):
        return _hours(rng, 26, 72)  # stalled: the carrier has been silent since the delay
    slack = min(_hours(rng, *SLACK_HOURS[order.stage]) for order in story.orders)
    due = [shipment.next_offset - last for shipment in story.shipments if shipment.next_offset is not None]
    if due:
        slack = min(slack, max(min(due), timedelta(minutes=10)) * rng.uniform(0.1, 0.9))
    return slack


def _whole_minutes(at: datetime) -> datetime:
    return at.replace(second=0, microsecond=0)


def _five_pm(day_of: datetime, days: int, zone: str) -> datetime:
    """17:00 local, ``days`` after the local day of ``day_of``: promises are end-of-business dates."""
    local = day_of.astimezone(ZoneInfo(zone))
    return datetime.combine(local.date() + timedelta(days=days), time(17), tzinfo=ZoneInfo(zone))


def _promise(order: OrderPlan, now: datetime, rng: random.Random) -> datetime:
    zone = order.customer.time_zone
    delivered = [s.first(K.SHIPMENT_DELIVERED) for s in order.shipments]
    if delivered and all(delivered):
        if order.late:
            last = max(step.at for step in delivered if step and step.at)
            return _five_pm(last, -1, zone)
        # Promised when ordered, the same lead time on every lane: a slow lane, a weekend in the
        # way or a disrupted week makes it late.
        return _five_pm(order.steps[0].at or now, LEAD_DAYS[order.shipments[0].carrier.mode], zone)
    if order.late:
        return _five_pm(now, -1, zone)
    if order.at_risk:
        return _five_pm(now, 1, zone)
    etas = [s.eta for s in order.shipments if s.eta]
    if etas:
        return _five_pm(max(etas), rng.randint(1, 2), zone)
    created = order.steps[0].at or now
    return _five_pm(created, LEAD_DAYS[order.customer.carriers[0].mode], zone)


def _number(stories: list[Story], rng: random.Random) -> None:
    """Hand out order, shipment, invoice and return numbers in the order things happened."""
    orders = sorted((o for story in stories for o in story.orders), key=lambda o: (o.steps[0].at, o.key))
    so, po = rng.randint(410_000, 460_000), {c.code: rng.randint(20_000, 70_000) for c in CUSTOMERS}
    for order in orders:
        so += rng.randint(1, 3)
        po[order.customer.code] += rng.randint(1, 9)
        order.number, order.po = f"SO-{so}", f"PO-{order.customer.po_prefix}{po[order.customer.code]}"
    invoiced = sorted((o for o in orders if o.invoice_flow), key=lambda o: (o.first(K.INVOICE_GENERATED).at, o.key))
    invoice = rng.randint(7_100_000, 7_400_000)
    for order in invoiced:
        invoice += rng.randint(1, 4)
        order.invoice = f"INV-{invoice}"
    rma = rng.randint(300_000, 330_000)
    for order in sorted((o for o in orders if o.return_flow), key=lambda o: (o.first(K.RETURN_AUTHORIZED).at, o.key)):
        rma += rng.randint(1, 5)
        order.rma = f"RMA-{rma}"

    shipments = sorted((s for story in stories for s in story.shipments), key=lambda s: (s.steps[0].at, s.key))
    sequence = {w.code: rng.randint(100_000, 200_000) for w in WAREHOUSES}
    bol = rng.randint(10**8, 5 * 10**8)
    charge = {c.code: rng.randint(1_000_000, 3_000_000) for c in CARRIERS}
    for shipment in shipments:
        warehouse = shipment.warehouse.code
        sequence[warehouse] += rng.randint(1, 4)
        bol += rng.randint(1, 9)
        shipment.number = f"SH-{warehouse[3:]}-{sequence[warehouse]}"
        shipment.bol = _gs1_check(f"0812345{bol:09d}")
        shipment.tracking, shipment.carrier_ref = _tracking(shipment.carrier, rng)
        charge[shipment.carrier.code] += rng.randint(1, 6)
        shipment.charge_number = f"{shipment.carrier.code}-{charge[shipment.carrier.code]}"


def _tracking(carrier: Carrier, rng: random.Random) -> tuple[str, tuple[str, str] | None]:
    """A tracking number in the carrier's own format, and the PRO or container it goes with."""
    if carrier.code == "EUPL":
        return _s10_tracking(rng.randint(10**7, 10**8 - 1), "NL"), None
    if carrier.mode == "parcel":
        return str(rng.randint(10**11, 10**12 - 1)), None
    if carrier.mode == "ltl":
        pro = rng.randint(10**8, 10**9 - 1)
        number = f"{pro}{pro % 7}"
        return number, ("pro", number)
    return f"{carrier.code}{rng.randint(10**7, 10**8 - 1)}", (
        "container",
        _iso6346_container("BLW", rng.randint(0, 999_999)),
    )


# --- the events: what each partner would send ---------------------------------------------------


# How long each kind of feed takes to reach us: events are applied in the order they arrive.
LATENCY = {
    F.API: timedelta(minutes=1),
    F.WEBHOOK: timedelta(minutes=3),
    F.X12: timedelta(minutes=40),
    F.EDIFACT: timedelta(minutes=90),
    F.CSV: timedelta(hours=5),
}


@dataclass(frozen=True)
class DemoEvent:
    partner: str
    channel: str
    body: dict[str, Any]
    arrival: datetime
    resent: bool = False


def _event(
    event_id: str,
    kind: EventKind,
    at: datetime,
    refs: list[tuple[str, str]],
    *,
    partner: str,
    channel: ChannelSpec,
    place: Place | None = None,
    resent: bool = False,
    **fields: Any,
) -> DemoEvent:
    zone = place or HEADQUARTERS
    body = {
        "event_id": event_id,
        "kind": kind.value,
        "occurred_at": zone.local(at).replace(microsecond=0),
        "references": [{"kind": ref_kind, "value": value} for ref_kind, value in refs],
        **{name: value for name, value in fields.items() if value not in (None, {}, [])},
    }
    if place:
        body["location"] = place.location()
    return DemoEvent(partner, channel.code, body, at + LATENCY[channel.format], resent)


def _lines(lines: list[Line], *, prices: bool = False, order: str | None = None) -> list[dict[str, Any]]:
    rows = []
    for number, line in enumerate(lines, start=1):
        row: dict[str, Any] = {"sku": line.sku, "quantity": Decimal(line.quantity), "uom": line.uom}
        if prices:
            row |= {"unit_price": line.price, "line_number": str(number * 10)}
        if order:
            row["order"] = order
        rows.append(row)
    return rows


def _order_events(order: OrderPlan) -> list[DemoEvent]:
    customer, warehouse = order.customer, order.customer.warehouse
    refs = [("order", order.number), ("po", order.po)]
    events = []
    for step in order.steps:
        kind, at = step.kind, step.at
        name = kind.value.split(".", 1)[1]
        if kind == K.ORDER_CREATED:
            header = {"customer": customer.code, "promised_at": order.promised_at, "region": customer.region}
            events.append(
                _event(
                    f"erp-{order.number}-created",
                    kind,
                    at,
                    refs,
                    partner=ERP.code,
                    channel=ERP_CHANNEL,
                    lines=_lines(order.lines, prices=True),
                    amount=order.total,
                    currency=customer.currency,
                    order=header,
                    attributes={"warehouse": warehouse.code, "ship_to": order.ship_to.city},
                )
            )
        elif kind in (K.ORDER_RELEASED, K.ORDER_CANCELLED):
            attributes = {"warehouse": warehouse.code, "reason": step.detail.get("reason")}
            events.append(
                _event(
                    f"erp-{order.number}-{name}",
                    kind,
                    at,
                    refs,
                    partner=ERP.code,
                    channel=ERP_CHANNEL,
                    attributes={k: v for k, v in attributes.items() if v},
                )
            )
        elif kind.family == "order":
            events.append(
                _event(
                    f"{warehouse.code.lower()}-{order.number}-{name}",
                    kind,
                    at,
                    refs,
                    partner=warehouse.code,
                    channel=WMS_CHANNEL,
                    place=step.place,
                    lines=_lines(order.lines) if kind == K.ORDER_PICKED else None,
                    attributes={"warehouse": warehouse.code},
                )
            )
        elif kind.family == "invoice":
            events.append(_invoice_event(order, step))
        else:
            events.append(_return_event(order, step))
    return events


def _invoice_event(order: OrderPlan, step: Step) -> DemoEvent:
    name = step.kind.value.split(".", 1)[1]
    reason = {K.INVOICE_HELD: order.hold_reason, K.INVOICE_RELEASED: "Reviewed and released by AR"}.get(step.kind)
    return _event(
        f"erp-{order.invoice}-{name}",
        step.kind,
        step.at,
        [("invoice", order.invoice), ("order", order.number), ("po", order.po)],
        partner=ERP.code,
        channel=ERP_CHANNEL,
        amount=order.total if step.kind == K.INVOICE_GENERATED else None,
        currency=order.customer.currency if step.kind == K.INVOICE_GENERATED else None,
        attributes={"reason": reason} if reason else None,
    )


def _return_event(order: OrderPlan, step: Step) -> DemoEvent:
    returned = [Line(line.sku, max(1, line.quantity // 4), line.uom, line.price) for line in order.lines[:1]]
    warehouse = order.customer.warehouse
    refs = [("rma", order.rma), ("order", order.number)]
    if step.kind == K.RETURN_AUTHORIZED:
        return _event(
            f"erp-{order.rma}-authorized",
            step.kind,
            step.at,
            refs,
            partner=ERP.code,
            channel=ERP_CHANNEL,
            lines=_lines(returned),
            attributes={"reason": step.detail["reason"], "warehouse": warehouse.code},
        )
    return _event(
        f"{warehouse.code.lower()}-{order.rma}-received",
        step.kind,
        step.at,
        refs,
        partner=warehouse.code,
        channel=WMS_CHANNEL,
        place=step.place,
        lines=_lines(returned),
        attributes={"warehouse": warehouse.code, "condition": "resalable"},
    )


# Status codes as each kind of carrier feed spells them: X12 214 AT701 for LTL and ocean, summary
# statuses for parcel webhooks.
X12_STATUS = {
    K.SHIPMENT_PICKED_UP: "AF",
    K.SHIPMENT_IN_TRANSIT: "X4",
    K.SHIPMENT_DELAYED: "SD",
    K.SHIPMENT_ETA_UPDATED: "AG",
    K.SHIPMENT_OUT_FOR_DELIVERY: "X6",
    K.SHIPMENT_DELIVERY_ATTEMPTED: "AH",
    K.SHIPMENT_DELIVERED: "D1",
    K.SHIPMENT_DAMAGED: "A9",
    K.SHIPMENT_REFUSED: "A7",
    K.SHIPMENT_POD_RECEIVED: "D1",
}
WEBHOOK_STATUS = {
    K.SHIPMENT_PICKED_UP: "picked_up",
    K.SHIPMENT_IN_TRANSIT: "in_transit",
    K.SHIPMENT_DELAYED: "exception",
    K.SHIPMENT_ETA_UPDATED: "in_transit",
    K.SHIPMENT_OUT_FOR_DELIVERY: "out_for_delivery",
    K.SHIPMENT_DELIVERY_ATTEMPTED: "failed_attempt",
    K.SHIPMENT_DELIVERED: "delivered",
    K.SHIPMENT_DAMAGED: "exception",
    K.SHIPMENT_REFUSED: "exception",
    K.SHIPMENT_POD_RECEIVED: "delivered",
}


def _carrier_refs(shipment: ShipmentPlan) -> list[tuple[str, str]]:
    """What the carrier quotes: its tracking number, or its PRO / container with our bill of lading."""
    if shipment.carrier_ref is None:
        return [("tracking", shipment.tracking)]
    return [shipment.carrier_ref, ("bol", shipment.bol)]


def _shipment_events(shipment: ShipmentPlan) -> list[DemoEvent]:
    carrier = shipment.carrier
    assigned = [("tracking", shipment.tracking), *([shipment.carrier_ref] if shipment.carrier_ref else [])]
    events = []
    for index, step in enumerate(shipment.steps):
        kind, at = step.kind, step.at
        if kind == K.SHIPMENT_MANIFESTED:
            events.append(_manifest_event(shipment, step, assigned if shipment.resent else []))
        elif kind == K.SHIPMENT_TRACKING_ASSIGNED:
            events.append(
                _event(
                    f"tms-{shipment.number}-tracking",
                    kind,
                    at,
                    [("shipment", shipment.number), *assigned],
                    partner=TMS.code,
                    channel=TMS_CHANNEL,
                    place=step.place,
                    attributes={"carrier": carrier.code},
                )
            )
        elif kind.family == "freight":
            events.append(_freight_event(shipment, step))
        else:
            codes = WEBHOOK_STATUS if carrier.mode == "parcel" else X12_STATUS
            attributes = {"carrier": carrier.code, "status_code": codes[kind], **step.detail}
            eta = attributes.pop("eta", None)
            if kind == K.SHIPMENT_ETA_UPDATED and shipment.orders[0].at_risk:
                eta = shipment.orders[0].promised_at + timedelta(hours=30)
            events.append(
                _event(
                    f"{carrier.code.lower()}-{shipment.tracking}-{index:02d}-{kind.value.split('.')[1]}",
                    kind,
                    at,
                    _carrier_refs(shipment),
                    partner=carrier.code,
                    channel=carrier.tracking_channel,
                    place=step.place,
                    estimated_delivery_at=eta,
                    attributes=attributes,
                )
            )
    return events


def _manifest_event(shipment: ShipmentPlan, step: Step, extra_refs: list[tuple[str, str]]) -> DemoEvent:
    warehouse = shipment.warehouse
    refs = [("shipment", shipment.number), ("bol", shipment.bol), *extra_refs]
    lines = []
    for order, order_lines in shipment.parts:
        refs += [("order", order.number), ("po", order.po)]
        lines += _lines(order_lines, order=order.number)
    units = sum(line.quantity for _, order_lines in shipment.parts for line in order_lines)
    return _event(
        f"{warehouse.code.lower()}-{shipment.number}-asn",
        step.kind,
        step.at,
        refs,
        partner=warehouse.code,
        channel=warehouse.asn_channel,
        place=step.place,
        resent=shipment.resent,
        lines=lines,
        estimated_delivery_at=shipment.eta if shipment.eta and shipment.eta > step.at else None,
        attributes={"carrier": shipment.carrier.code, "warehouse": warehouse.code, "units": units},
    )


def _freight_event(shipment: ShipmentPlan, step: Step) -> DemoEvent:
    """The carrier bills, the TMS audits against its quote, the ERP pays (the quote, after a dispute)."""
    carrier, kind = shipment.carrier, step.kind
    billed = shipment.quote + shipment.accessorial
    attributes: dict[str, Any] = {"carrier": carrier.code, "charge_number": shipment.charge_number, **step.detail}
    amount = None
    if kind == K.FREIGHT_CHARGE_POSTED:
        partner, channel, amount = carrier.code, carrier.billing_channel, billed
    elif kind == K.FREIGHT_CHARGE_SETTLED:
        partner, channel = ERP.code, ERP_CHANNEL
        amount = shipment.quote if K.FREIGHT_CHARGE_DISPUTED in shipment.freight_flow else billed
    else:
        partner, channel = TMS.code, AUDIT_CHANNEL
        attributes["quoted_amount"] = str(shipment.quote)
    return _event(
        f"{partner.lower()}-{shipment.charge_number}-{kind.value.removeprefix('freight.charge_')}",
        kind,
        step.at,
        _carrier_refs(shipment),
        partner=partner,
        channel=channel,
        amount=amount,
        currency=carrier.currency if amount is not None else None,
        attributes=attributes,
    )


def _inventory_events(now: datetime, rng: random.Random) -> list[DemoEvent]:
    """A daily stock snapshot per warehouse for the last week (the latest two hours ago) and the
    adjustments of each day; the ERP's book stock an hour after each snapshot, drifting on a few
    SKUs (shrinkage and receipts it never booked); the last warehouse's file stopped three days ago."""
    events = []
    for warehouse in WAREHOUSES:
        products = sorted({p for c in CUSTOMERS if c.warehouse == warehouse for p in c.products}, key=lambda p: p.sku)
        stock = {product.sku: rng.randint(300, 6000) for product in products}
        drift = {product.sku: rng.choice(BOOK_DRIFTS) for product in products}
        prefix = warehouse.code.lower()
        last_night = 3 if warehouse == WAREHOUSES[-1] else 0
        for days_ago in range(7, last_night - 1, -1):
            night = now - timedelta(days=days_ago, hours=2)
            for sku in stock:
                stock[sku] = max(0, stock[sku] + rng.randint(-400, 300))
            snapshot = [Line(p.sku, stock[p.sku], p.uom, p.price) for p in products]
            book = [Line(p.sku, round(stock[p.sku] * (1 + drift[p.sku])), p.uom, p.price) for p in products]
            attributes = {"warehouse": warehouse.code}
            events.append(
                _event(
                    f"{prefix}-stock-snapshot-d{days_ago}",
                    K.INVENTORY_SNAPSHOT,
                    night,
                    [],
                    partner=warehouse.code,
                    channel=STOCK_CHANNEL,
                    place=warehouse.place,
                    lines=_lines(snapshot),
                    attributes=attributes,
                )
            )
            events.append(
                _event(
                    f"erp-{prefix}-book-stock-d{days_ago}",
                    K.INVENTORY_SNAPSHOT,
                    night + timedelta(hours=1),
                    [],
                    partner=ERP.code,
                    channel=ERP_CHANNEL,
                    lines=_lines(book),
                    attributes=attributes,
                )
            )
            for number in range(rng.randint(0, 2) if days_ago else 0):  # today's moves: none yet
                product = rng.choice(products)
                change = rng.choice((-1, 1)) * rng.randint(1, 24)
                events.append(
                    _event(
                        f"{prefix}-stock-adjustment-d{days_ago}-{number}",
                        K.INVENTORY_ADJUSTED,
                        night + _hours(rng, 2, 18),
                        [],
                        partner=warehouse.code,
                        channel=WMS_CHANNEL,
                        place=warehouse.place,
                        lines=_lines([Line(product.sku, change, product.uom, product.price)]),
                        attributes={**attributes, "reason": rng.choice(ADJUST_REASONS)},
                    )
                )
    return events


def _stray_events(count: int, now: datetime, rng: random.Random) -> list[DemoEvent]:
    """Events about shipments that are not ours (a mislabelled parcel, a misbilled PRO): parked for good."""
    events = []
    for number in range(count):
        at = now - _hours(rng, 2, 240)
        carrier = (SWPX, RDLN, EUPL, BLWT)[number % 4]
        tracking, carrier_ref = _tracking(carrier, rng)
        refs = [carrier_ref] if carrier_ref else [("tracking", tracking)]
        if carrier == RDLN:
            amount = Decimal(rng.randint(*carrier.freight))
            attributes = {"carrier": carrier.code, "charge_number": f"{carrier.code}-{rng.randint(10**6, 10**7)}"}
            events.append(
                _event(
                    f"rdln-stray-{tracking}",
                    K.FREIGHT_CHARGE_POSTED,
                    at,
                    refs,
                    partner=carrier.code,
                    channel=carrier.billing_channel,
                    amount=amount,
                    currency=carrier.currency,
                    attributes=attributes,
                )
            )
            continue
        place = rng.choice(rng.choice(CUSTOMERS).route)
        codes = WEBHOOK_STATUS if carrier.mode == "parcel" else X12_STATUS
        events.append(
            _event(
                f"{carrier.code.lower()}-stray-{tracking}",
                K.SHIPMENT_IN_TRANSIT,
                at,
                refs,
                partner=carrier.code,
                channel=carrier.tracking_channel,
                place=place,
                attributes={"carrier": carrier.code, "status_code": codes[K.SHIPMENT_IN_TRANSIT]},
            )
        )
    return events


def demo_events(*, orders: int, seed: int, now: datetime) -> list[DemoEvent]:
    """Every event of the demo world: a function of ``orders`` and ``seed``, placed before ``now``."""
    rng = random.Random(seed)  # noqa: S311 - demo data, not security
    plans = [_new_order(key, stage, rng) for key, stage in enumerate(_stages(orders, rng))]
    planner = _Planner(rng)
    stories = planner.stories(plans)
    planner.trouble(stories)
    planner.freight(stories)
    planner.invoices(stories)
    for story in stories:
        _schedule(story, now, rng)
    _number(stories, rng)
    for story in stories:
        _place(story, now)
    for order in plans:
        order.promised_at = _promise(order, now, rng)
    events = []
    for story in stories:
        for order in story.orders:
            events += _order_events(order)
        for shipment in story.shipments:
            events += _shipment_events(shipment)
    return events + _inventory_events(now, rng) + _stray_events(max(3, orders // 50), now, rng)


# --- applying: in arrival order, in batches, like a feed ---------------------------------------


@dataclass(frozen=True)
class DemoSummary:
    partners: int
    events: int
    applied: int
    duplicates: int
    unparked: int
    rejected: int
    orders: int
    shipments: int
    milestones: int
    parked: int
    stages: dict[str, int]


def _batches(events: list[DemoEvent]) -> Iterator[list[DemoEvent]]:
    """Events in the order they would arrive; ship notices the warehouse re-sends come last."""
    for resent in (False, True):
        queue = sorted((e for e in events if e.resent == resent), key=lambda e: (e.arrival, e.body["event_id"]))
        for start in range(0, len(queue), APPLY_BATCH_SIZE):
            yield queue[start : start + APPLY_BATCH_SIZE]


def _parse(batch: list[DemoEvent]) -> list[CanonicalEvent]:
    by_source: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for event in batch:
        by_source[(event.partner, event.channel)].append(event.body)
    return [
        event
        for (partner, channel), bodies in by_source.items()
        for event in parse_events(bodies, source=EventSource(partner=partner, channel=channel))
    ]


def seed_demo(
    *, orders: int = DEFAULT_ORDERS, seed: int = DEFAULT_SEED, now: datetime | None = None, progress: bool = False
) -> DemoSummary:
    """Upsert the demo partners, then apply the demo's events in batches; safe to run again."""
    if orders < MIN_ORDERS:
        raise ValueError(f"the demo needs at least {MIN_ORDERS} orders to show every stage")
    partners = partners_upsert()
    events = demo_events(orders=orders, seed=seed, now=now or timezone.now())
    totals: Counter[str] = Counter()
    with tqdm(total=len(events), unit="event", desc="Applying demo events", disable=not progress) as bar:
        for batch in _batches(events):
            result = apply_events(_parse(batch))
            totals.update(
                applied=len(result.applied),
                duplicates=len(result.duplicates),
                unparked=len(result.unparked),
                rejected=len(result.rejected),
            )
            bar.update(len(batch))
    stages = dict(Order.objects.order_by().values_list("stage").annotate(count=Count("id")))
    return DemoSummary(
        partners=partners,
        events=len(events),
        applied=totals["applied"],
        duplicates=totals["duplicates"],
        unparked=totals["unparked"],
        rejected=totals["rejected"],
        orders=Order.objects.count(),
        shipments=Shipment.objects.count(),
        milestones=Milestone.objects.count(),
        parked=ParkedEvent.objects.count(),
        stages={stage: stages.get(stage, 0) for stage in S.values},
    )

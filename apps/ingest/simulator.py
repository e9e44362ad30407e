"""A feed simulator: order-to-cash stories told in every partner format, through the real receivers.

``generate`` writes a deterministic stream of documents, one story per order, as the partners of
the demo world would send them (their codes, EDI ids and channels come from
:mod:`apps.timeline.demo`):

=============  ===========================================  ===============================
partner        documents                                    route
=============  ===========================================  ===============================
ERP            canonical JSON: order created, released,     ``POST /api/v1/events/``
               invoice generated; DC-ATL's book stock
DC-ATL         X12 856 ship notice, or X12 945 (one in 4);  ``POST /api/v1/messages/``
               X12 846 stock twice a day
DC-RTM         EDIFACT DESADV                               inbox ``DC-RTM/desadv/``
RDLN           X12 214 carrier status                       inbox ``RDLN/edi-214/``
SWPX           EasyPost ``tracker.updated`` webhooks        ``/hooks/SWPX/tracking-hook/``
NRDL           EDIFACT IFTSTA status                        ``POST /api/v1/messages/``
EUPL           CSV status export (4-hourly, ``;``)          ``POST /api/v1/messages/``
=============  ===========================================  ===============================

With ``faults`` about 5-10% of the stream misbehaves the way real feeds do: exact resends, a
carrier status before the ship notice, an older scan arriving after the delivery, a milestone
never reported, statuses for shipments that are not ours (they stay parked), and malformed
documents (an X12 file cut before its first set, broken JSON) each followed by the good resend.

The senders deliver a stream to a running server (``send_http`` and ``drop_files``) or through a
test client (``send_in_process``) and count what the receivers answered.
"""

import hashlib
import json
import random
import secrets
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import transaction

from apps.ingest import services
from apps.ingest.parsers.x12_writer import Envelope, OutboundSet, Party, write_interchange
from apps.ingest.webhooks import signature_for
from apps.partners.models import Channel, Partner
from apps.partners.services import api_token_create, partner_upsert
from apps.timeline import demo

API_EVENTS, API_MESSAGES, WEBHOOK, INBOX = "api-events", "api-messages", "webhook", "inbox"
DEFAULT_START = datetime(2026, 11, 2, 6, 0, tzinfo=UTC)
MAX_ORDERS = 5000
ORDER_GAP = timedelta(minutes=15)
# The longest story (created to invoiced) stays under this, so a stream started this long ago ends
# before now: ``simulate`` starts every round there.
STORY_SPAN = timedelta(days=4)
CSV_EXPORT_EVERY = timedelta(hours=4)
STOCK_EVERY = timedelta(hours=12)
OPENING_STOCK = 5000  # of each SKU, at each warehouse, when a stream starts
FAULT_EVERY_NTH_STORY = 4  # of the stories far enough along to go wrong
DUPLICATE_SHARE = 0.03
MALFORMED_EVERY = 100  # one truncated X12 and two broken JSON bodies per this many messages
RETRIES = 2
RETRY_DELAY = 0.5
HTTP_TIMEOUT = 10
RECEIVER = Party("ZZ", "CTRLTOWER")
CONTENT_TYPES = {"x12": "application/edi-x12", "edifact": "application/edifact", "csv": "text/csv"}
X12_ZONES = {
    "America/New_York": "ET",
    "America/Toronto": "ET",
    "America/Chicago": "CT",
    "America/Denver": "MT",
    "America/Los_Angeles": "PT",
}
LOCODES = {
    "Rotterdam": "NLRTM",
    "Duisburg": "DEDUI",
    "Köln": "DECGN",
    "Düsseldorf": "DEDUS",
    "Frankfurt am Main": "DEFRA",
}

# Milestones a carrier reports, in order, and each carrier's words for them.
# A carrier's estimate at pickup, before its own bias.
ESTIMATE = timedelta(days=3)
SCANS = ("picked_up", "in_transit", "out_for_delivery", "delivered")
X12_214_CODES = {"picked_up": "AF", "in_transit": "X6", "out_for_delivery": "X1", "delivered": "D1"}
IFTSTA_CODES = {"picked_up": "13", "in_transit": "24", "out_for_delivery": "113", "delivered": "21"}
CSV_STATUSES = {
    "picked_up": "OPGEHAALD",
    "in_transit": "ONDERWEG",
    "out_for_delivery": "IN BEZORGING",
    "delivered": "AFGELEVERD",
}
EASYPOST_STATUSES = {
    "label": ("pre_transit", "label_created", "Shipping label created"),
    "picked_up": ("in_transit", "arrived_at_facility", "Accepted at origin facility"),
    "in_transit": ("in_transit", "departed_facility", "Departed hub"),
    "out_for_delivery": ("out_for_delivery", "out_for_delivery", "Out for delivery"),
    "delivered": ("delivered", "arrived_at_destination", "Delivered, front door"),
}
CSV_COLUMNS = {
    "tracking": "Zendingnummer",
    "status": "Status",
    "occurred_at": "Datum/tijd",
    "city": "Plaats",
    "country": "Land",
    "order": "Referentie",
}
CSV_TIME_FORMAT = "%d-%m-%Y %H:%M"
# How far each story goes: created, released, shipped (carrier scans under way), delivered, invoiced.
DEPTH_WEIGHTS = (1, 1, 3, 2, 3)
SHIPPED, DELIVERED, INVOICED = 2, 3, 4


# --- partners, channels, tokens ---------------------------------------------------------------


@dataclass(frozen=True)
class ChannelPlan:
    partner: str
    code: str
    name: str
    format: str
    route: str
    mapping: dict[str, Any] = field(default_factory=dict)
    signed: bool = False


F = Channel.Format
ERP_EVENTS = ChannelPlan("ERP", demo.ERP_CHANNEL.code, demo.ERP_CHANNEL.name, F.API, API_EVENTS)
ASN_856 = ChannelPlan("DC-ATL", demo.ASN_CHANNEL.code, demo.ASN_CHANNEL.name, F.X12, API_MESSAGES)
ADVICE_945 = ChannelPlan("DC-ATL", "edi-945", "Warehouse shipping advice (X12 945)", F.X12, API_MESSAGES)
DESADV = ChannelPlan("DC-RTM", demo.DESADV_CHANNEL.code, demo.DESADV_CHANNEL.name, F.EDIFACT, INBOX)
STATUS_214 = ChannelPlan("RDLN", "edi-214", "Shipment status (X12 214)", F.X12, INBOX)
TRACKING_HOOK = ChannelPlan(
    "SWPX", "tracking-hook", "Tracking webhook (EasyPost)", F.WEBHOOK, WEBHOOK, {"adapter": "easypost"}, signed=True
)
IFTSTA = ChannelPlan("NRDL", "iftsta", "Status (EDIFACT IFTSTA)", F.EDIFACT, API_MESSAGES)
STATUS_CSV = ChannelPlan(
    "EUPL",
    "status-csv",
    "Status export (CSV)",
    F.CSV,
    API_MESSAGES,
    {
        "csv": {
            "feed": "shipment_status",
            "delimiter": ";",
            "columns": CSV_COLUMNS,
            "time_format": CSV_TIME_FORMAT,
            "status_codes": {word: milestone for milestone, word in CSV_STATUSES.items()},
        }
    },
)
CHANNELS = (ERP_EVENTS, ASN_856, ADVICE_945, DESADV, STATUS_214, TRACKING_HOOK, IFTSTA, STATUS_CSV)
CARRIER_CHANNELS = {"RDLN": STATUS_214, "SWPX": TRACKING_HOOK, "NRDL": IFTSTA, "EUPL": STATUS_CSV}
CUSTOMERS = {customer.code: customer for customer in demo.CUSTOMERS}
# (customer, weight): EU orders ship from Rotterdam, North American ones from Atlanta.
CUSTOMER_WEIGHTS = (("BERGMANN", 2), ("HARBORLINE", 2), ("MAPLELEAF", 1))
PARTNERS = (
    demo.ERP,
    demo.DC_ATL.spec(),
    demo.DC_RTM.spec(),
    demo.RDLN.spec(),
    demo.SWPX.spec(),
    demo.NRDL.spec(),
    demo.EUPL.spec(),
    *(CUSTOMERS[code].spec() for code, _ in CUSTOMER_WEIGHTS),
)
# UNB sender ids the EDIFACT documents use, beside each partner's demo EDI ids.
EXTRA_EDI_IDS = {"NRDL": [("ZZ", "NRDL")]}


@dataclass
class Simulation:
    """What the senders need: raw API tokens by partner, webhook secrets by (partner, channel)."""

    tokens: dict[str, str]
    secrets: dict[tuple[str, str], str]
    # Last X-Timestamp used per body: a resent body is signed with another stamp, never replayed.
    stamps: dict[tuple[str, str], int] = field(default_factory=dict, repr=False)

    def sign(self, message: "SimMessage") -> tuple[str, str]:
        """X-Timestamp and X-Signature for sending ``message`` now."""
        stamp = int(time.time())
        key = (message.channel, hashlib.sha256(message.body).hexdigest())
        if key in self.stamps and self.stamps[key] >= stamp:
            stamp = self.stamps[key] - 1
        self.stamps[key] = stamp
        return str(stamp), signature_for(self.secrets[(message.partner, message.channel)], str(stamp), message.body)


def simulation_setup() -> Simulation:
    """Create or update the simulator's partners and channels; new API tokens every call."""
    with transaction.atomic():
        partners = {spec.code: _partner_upsert(spec) for spec in PARTNERS}
        channels = [_channel_upsert(partners[plan.partner], plan) for plan in CHANNELS]
        api_partners = sorted({plan.partner for plan in CHANNELS if plan.route in (API_EVENTS, API_MESSAGES)})
        tokens = {code: api_token_create(partner=partners[code], name="feed simulator")[1] for code in api_partners}
    secrets = {(c.partner.code, c.code): c.webhook_secret for c in channels if c.webhook_secret}
    return Simulation(tokens=tokens, secrets=secrets)


def _partner_upsert(spec: demo.PartnerSpec) -> Partner:
    partner, _ = partner_upsert(
        code=spec.code,
        kind=spec.kind,
        name=spec.name,
        region=spec.region,
        time_zone=spec.time_zone,
        edi_ids=[*spec.edi_ids, *EXTRA_EDI_IDS.get(spec.code, [])],
    )
    return partner


def _channel_upsert(partner: Partner, plan: ChannelPlan) -> Channel:
    channel, _ = Channel.objects.update_or_create(
        partner=partner,
        code=plan.code,
        defaults={
            "name": plan.name,
            "format": plan.format,
            "direction": Channel.Direction.INBOUND,
            "active": True,
            "mapping_overrides": plan.mapping,
        },
    )
    if plan.signed and not channel.webhook_secret:
        channel.webhook_secret = f"whsec_{secrets.token_hex(24)}"
        channel.save(update_fields=["webhook_secret"])
    return channel


# --- the stream -------------------------------------------------------------------------------


@dataclass(frozen=True)
class SimMessage:
    """One document as a partner sends it; ``fault`` names what is deliberately wrong with it."""

    route: str
    partner: str
    channel: str
    format: str
    body: bytes
    filename: str
    idempotency_key: str | None
    sent_at: datetime
    fault: str | None = None


@dataclass(frozen=True)
class Scan:
    milestone: str
    at: datetime
    place: demo.Place


@dataclass
class Story:
    """One order's facts; every document about it is rendered from these."""

    key: str
    customer: demo.Customer
    carrier: demo.Carrier
    lines: list[tuple[demo.Product, int]]
    depth: int
    created_at: datetime
    released_at: datetime
    shipped_at: datetime
    invoiced_at: datetime
    scans: list[Scan]
    manifest: str  # 856, 945 or desadv
    carrier_ref: str  # tracking number (parcel) or PRO (LTL); NRDL quotes our shipment number
    fault: str | None = None

    @property
    def warehouse(self) -> demo.Warehouse:
        return self.customer.warehouse

    @property
    def number(self) -> str:
        return f"SO-{self.key}"

    @property
    def po(self) -> str:
        return f"PO-{self.customer.po_prefix}{self.key}"

    @property
    def shipment(self) -> str:
        return f"SH-{self.warehouse.code[3:]}-{self.key}"

    @property
    def bol(self) -> str:
        return f"BOL-{self.key}"

    @property
    def invoice(self) -> str:
        return f"INV-{self.key}"

    @property
    def total(self) -> Decimal:
        return sum((product.price * quantity for product, quantity in self.lines), Decimal(0))

    @property
    def estimate(self) -> datetime:
        """Three days, skewed by the carrier's own bias: how its quote in the demo's history compares
        with its usual transit (Swiftpost's is optimistic, Nordline's cautious)."""
        low, high = self.carrier.transit_hours
        return _carrier_moves(self.carrier, self.shipped_at, ESTIMATE * (self.carrier.quoted_hours * 2 / (low + high)))


@dataclass
class _Stream:
    """The messages of a stream in the making, with the counters their documents need."""

    seed: int
    rng: random.Random
    messages: list[SimMessage] = field(default_factory=list)
    csv_rows: list[tuple[datetime, str, str | None]] = field(default_factory=list)
    control: int = 0

    def next_control(self) -> int:
        self.control += 1
        return (self.seed % 9000) * 100_000 + self.control

    def add(self, plan: ChannelPlan, fmt: str, body: bytes, sent_at: datetime, **fields: Any) -> None:
        self.messages.append(
            SimMessage(
                route=plan.route,
                partner=plan.partner,
                channel=plan.code,
                format=fmt,
                body=body,
                filename=fields.get("filename", ""),
                idempotency_key=fields.get("key"),
                sent_at=sent_at,
                fault=fields.get("fault"),
            )
        )


def generate(seed: int, orders: int, faults: bool = True, start: datetime | None = None) -> list[SimMessage]:
    """The stream of ``orders`` order-to-cash stories, in sending order; a function of its arguments."""
    if not 0 < orders <= MAX_ORDERS:
        raise ValueError(f"orders must be between 1 and {MAX_ORDERS}")
    stream = _Stream(seed=seed, rng=random.Random(seed))  # noqa: S311 - reproducible test data, not secrets
    start = start or DEFAULT_START
    stories = [_plan(stream, index, start) for index in range(orders)]
    if faults:
        _story_faults(stories, stream.rng)
    for story in stories:
        _tell(stream, story)
    if faults:
        for index in range(max(1, orders // 12)):
            _unknown_reference(stream, _plan(stream, MAX_ORDERS + index, start))
    _csv_exports(stream)
    _stock_reports(stream, stories)
    messages = sorted(stream.messages, key=lambda message: message.sent_at)
    return _message_faults(messages, stream.rng) if faults else messages


def _hours(rng: random.Random, low: float, high: float) -> timedelta:
    return timedelta(minutes=round(rng.uniform(low, high) * 60))


def _carrier_moves(carrier: demo.Carrier, at: datetime, duration: timedelta) -> datetime:
    if carrier.delivers_at_weekends:
        return at + duration
    return demo.skip_weekends(at, duration / timedelta(hours=1))


def _plan(stream: _Stream, index: int, start: datetime) -> Story:
    rng = stream.rng
    customer = CUSTOMERS[rng.choices(*zip(*CUSTOMER_WEIGHTS, strict=True))[0]]
    carrier = rng.choice(customer.carriers)
    # Stories past MAX_ORDERS are strangers' shipments (unknown references), timed like the first ones.
    created = start + index % MAX_ORDERS * ORDER_GAP + _hours(rng, 0, 0.2)
    released = created + _hours(rng, 0.5, 3)
    shipped = released + _hours(rng, 4, 20)
    at, scans = shipped, []
    for milestone, (low, high) in zip(SCANS, ((1, 4), (3, 10), (10, 30), (1, 6)), strict=True):
        # Lanes differ (the customer's transit factor); a freight carrier's truck waits for Monday.
        at = _carrier_moves(carrier, at, _hours(rng, low, high) * customer.transit_factor)
        scans.append(Scan(milestone, at, _scan_place(customer, milestone, rng)))
    depth = rng.choices(range(len(DEPTH_WEIGHTS)), DEPTH_WEIGHTS)[0]
    reached = len(SCANS) if depth >= DELIVERED else (rng.randint(0, 3) if depth == SHIPPED else 0)
    products = rng.sample(customer.products, rng.randint(1, 3))
    return Story(
        key=f"{stream.seed}-{index + 1:04d}",
        customer=customer,
        carrier=carrier,
        lines=[(product, rng.randint(1, 20) * customer.bulk) for product in products],
        depth=depth,
        created_at=created,
        released_at=released,
        shipped_at=shipped,
        invoiced_at=scans[-1].at + _hours(rng, 1, 12),
        scans=scans[:reached],
        manifest=_manifest_kind(customer, rng),
        carrier_ref=_carrier_ref(carrier, rng),
    )


def _scan_place(customer: demo.Customer, milestone: str, rng: random.Random) -> demo.Place:
    if milestone == "picked_up":
        return customer.warehouse.place
    if milestone == "in_transit":
        return rng.choice(customer.route)
    return customer.ship_to[0]


def _manifest_kind(customer: demo.Customer, rng: random.Random) -> str:
    if customer.warehouse.asn_channel.format == F.EDIFACT:
        return "desadv"
    return "945" if rng.random() < 0.25 else "856"


def _carrier_ref(carrier: demo.Carrier, rng: random.Random) -> str:
    if carrier.code == "EUPL":
        return f"CX{rng.randint(10**7, 10**8 - 1)}NL"
    if carrier.mode == "parcel":
        return str(rng.randint(10**11, 10**12 - 1))
    return str(rng.randint(10**8, 10**9 - 1))


# --- story faults: reordered, late, missing ---------------------------------------------------


def _story_faults(stories: list[Story], rng: random.Random) -> None:
    """Every fourth story that has shipped misbehaves, in one of the ways its depth allows."""
    candidates = [story for story in stories if _possible_faults(story)]
    for cycle, story in enumerate(candidates[FAULT_EVERY_NTH_STORY - 1 :: FAULT_EVERY_NTH_STORY]):
        possible = _possible_faults(story)
        story.fault = possible[cycle % len(possible)]
        if story.fault == "missing_milestone":
            del story.scans[rng.randint(0, len(story.scans) - 2)]


def _possible_faults(story: Story) -> list[str]:
    found = []
    if story.scans and story.carrier.code != "EUPL":  # EUPL reports in 4-hourly files
        found.append("reordered")
    if story.depth >= DELIVERED:
        found += ["late_event", "missing_milestone"]
    return found


# --- rendering one story ----------------------------------------------------------------------


def _tell(stream: _Stream, story: Story) -> None:
    rng = stream.rng
    _erp(stream, story, "order.created", story.created_at, _lag(rng))
    if story.depth >= 1:
        _erp(stream, story, "order.released", story.released_at, _lag(rng))
    if story.depth < SHIPPED:
        return
    scans = list(story.scans)
    manifest_sent = story.shipped_at + _lag(rng)
    if story.fault == "reordered":  # the ship notice is held back until after the first scan
        manifest_sent = scans[0].at + _hours(rng, 0.5, 3)
    _manifest(stream, story, manifest_sent)
    for position, scan in enumerate(scans):
        fault = "reordered" if story.fault == "reordered" and position == 0 else None
        _scan(stream, story, scans[: position + 1], scan.at + _lag(rng), fault)
    if story.fault == "late_event":
        _late_scan(stream, story, scans)
    if story.depth >= INVOICED:
        _erp(stream, story, "invoice.generated", story.invoiced_at, _lag(rng))


def _lag(rng: random.Random) -> timedelta:
    return timedelta(minutes=rng.randint(1, 25))


def _late_scan(stream: _Stream, story: Story, scans: list[Scan]) -> None:
    """A hub scan between pick-up and delivery whose message arrives hours after the delivery."""
    hub = Scan("in_transit", scans[0].at + (scans[-1].at - scans[0].at) / 2, story.customer.route[-1])
    sent = scans[-1].at + _hours(stream.rng, 2, 12)
    _scan(stream, story, [*scans[:1], hub], sent, "late_event")


def _local(at: datetime, zone: str) -> datetime:
    return at.astimezone(ZoneInfo(zone))


def _iso(at: datetime, zone: str) -> str:
    return _local(at, zone).isoformat(timespec="seconds")


def _erp(stream: _Stream, story: Story, kind: str, at: datetime, lag: timedelta) -> None:
    event_id = f"erp-{story.number}-{kind.split('.')[1]}"
    event = {"event_id": event_id, "kind": kind, "schema_version": 1, "occurred_at": _iso(at, demo.ERP.time_zone)}
    event |= _erp_fields(story, kind)
    body = json.dumps({"events": [event]}, ensure_ascii=False).encode()
    stream.add(ERP_EVENTS, "json", body, at + lag, key=event_id)


def _erp_fields(story: Story, kind: str) -> dict[str, Any]:
    refs = [{"kind": "order", "value": story.number}, {"kind": "po", "value": story.po}]
    lines = [
        {"sku": product.sku, "quantity": str(quantity), "uom": product.uom, "unit_price": str(product.price)}
        for product, quantity in story.lines
    ]
    money = {"amount": str(story.total), "currency": story.customer.currency}
    if kind == "order.created":
        promised = _iso(story.created_at + STORY_SPAN, story.customer.time_zone)
        order = {"customer": story.customer.code, "promised_at": promised, "region": story.customer.region}
        return {"references": refs, "lines": lines, "order": order, **money}
    if kind == "order.released":
        return {"references": refs, "attributes": {"warehouse": story.warehouse.code}}
    return {"references": [{"kind": "invoice", "value": story.invoice}, *refs], "lines": lines, **money}


def _manifest(stream: _Stream, story: Story, sent: datetime) -> None:
    if story.manifest == "desadv":
        control = stream.next_control()
        body = _desadv(story, control, sent)
        stream.add(DESADV, "edifact", body, sent, filename=f"DESADV_{story.shipment}_{control}.edi")
        return
    sender, zone = Party("ZZ", story.warehouse.edi_id), story.warehouse.place.time_zone
    if story.manifest == "945":
        stream.add(ADVICE_945, "x12", _x12(sender, "SW", "945", _945(story), stream, sent, zone=zone), sent)
    else:
        stream.add(ASN_856, "x12", _x12(sender, "SH", "856", _856(story), stream, sent, zone=zone), sent)


def _scan(stream: _Stream, story: Story, scans: list[Scan], sent: datetime, fault: str | None) -> None:
    """The carrier's message about the last of ``scans`` (webhooks repeat the earlier ones)."""
    code, scan = story.carrier.code, scans[-1]
    plan = CARRIER_CHANNELS[code]
    if code == "RDLN":
        control = stream.next_control()
        sender = Party("02", "RDLN")
        body = _x12(sender, "QM", "214", _214(story, scan), stream, sent, zone=demo.RDLN.time_zone, control=control)
        stream.add(plan, "x12", body, sent, filename=f"RDLN_214_{control}.edi", fault=fault)
    elif code == "SWPX":
        stream.add(plan, "easypost", _easypost(story, scans, sent), sent, fault=fault)
    elif code == "NRDL":
        stream.add(plan, "edifact", _iftsta(story, scan, stream.next_control(), sent), sent, fault=fault)
    else:
        stream.csv_rows.append((sent, _csv_row(story, scan), fault))


def _unknown_reference(stream: _Stream, ghost: Story) -> None:
    """A carrier's status about a shipment that is not ours: it stays parked."""
    ghost.carrier = stream.rng.choice([demo.RDLN, demo.SWPX, demo.NRDL, demo.EUPL])
    ghost.carrier_ref = _carrier_ref(ghost.carrier, stream.rng)
    scan = Scan("in_transit", ghost.shipped_at + _hours(stream.rng, 3, 10), ghost.customer.route[0])
    _scan(stream, ghost, [scan], scan.at + _lag(stream.rng), "unknown_reference")


# --- X12 --------------------------------------------------------------------------------------


def _x12(
    sender: Party,
    functional_id: str,
    set_type: str,
    body: list[list[str]],
    stream: _Stream,
    sent: datetime,
    *,
    zone: str,
    control: int | None = None,
) -> bytes:
    """One interchange holding one set; stamped with the sender's local time when it was sent."""
    envelope = Envelope(
        sender=sender,
        receiver=RECEIVER,
        application_sender=sender.id,
        application_receiver=RECEIVER.id,
        control_number=control or stream.next_control(),
        created_at=_local(sent, zone).replace(tzinfo=None),
    )
    return write_interchange(envelope, functional_id, [OutboundSet(type=set_type, body=body)]).encode()


def _x12_moment(at: datetime, zone: str) -> list[str]:
    """Date, time and X12 time zone code; places outside the table are written in UTC."""
    code = X12_ZONES.get(zone)
    local = _local(at, zone) if code else at.astimezone(UTC)
    return [local.strftime("%Y%m%d"), local.strftime("%H%M"), code or "UT"]


def _carrier_refs_856(story: Story) -> list[list[str]]:
    qualifier = "2I" if story.carrier.mode == "parcel" else "CN"
    return [["REF", "BM", story.bol], ["REF", qualifier, story.carrier_ref]]


def _856(story: Story) -> list[list[str]]:
    zone, place = story.warehouse.place.time_zone, story.warehouse.place
    shipped = _x12_moment(story.shipped_at, zone)
    body = [
        ["BSN", "00", story.shipment, shipped[0], shipped[1]],
        ["HL", "1", "", "S"],
        ["TD1", "CTN25", str(len(story.lines))],
        ["TD5", "", "2", story.carrier.code, "M"],
        *_carrier_refs_856(story),
        ["DTM", "011", *shipped],
        ["DTM", "017", *_x12_moment(story.estimate, zone)],
        ["N1", "SF", story.warehouse.place.name or story.warehouse.name, "92", story.warehouse.code],
        ["N4", place.city, place.state or "", "", place.country],
        ["N1", "ST", story.customer.name, "92", story.customer.code],
        ["HL", "2", "1", "O"],
        ["PRF", story.po],
        ["REF", "VN", story.number],
    ]
    for number, (product, quantity) in enumerate(story.lines, start=1):
        body += [
            ["HL", str(number + 2), "2", "I"],
            ["LIN", str(number), "SK", product.sku],
            ["SN1", "", str(quantity), product.uom],
        ]
    return [*body, ["CTT", str(len(story.lines) + 2)]]


def _945(story: Story) -> list[list[str]]:
    shipped = _x12_moment(story.shipped_at, story.warehouse.place.time_zone)
    qualifier = "2I" if story.carrier.mode == "parcel" else "CN"
    body = [
        ["W06", "N", story.number, shipped[0], story.shipment, "", story.po],
        ["N1", "SF", story.warehouse.name],
        ["N9", "BM", story.bol],
        ["N9", qualifier, story.carrier_ref],
        ["W27", "M", story.carrier.code],
    ]
    for number, (product, quantity) in enumerate(story.lines, start=1):
        body += [
            ["LX", str(number)],
            ["W12", "CC", str(quantity), str(quantity), "0", product.uom, "", "SK", product.sku],
        ]
    return [*body, ["W03", str(sum(quantity for _, quantity in story.lines))]]


def _214(story: Story, scan: Scan) -> list[list[str]]:
    return [
        ["B10", story.carrier_ref, story.shipment, "RDLN"],
        ["L11", story.bol, "BM"],
        ["L11", story.po, "PO"],
        ["N1", "SH", story.warehouse.name],
        ["N1", "CN", story.customer.name],
        ["LX", "1"],
        ["AT7", X12_214_CODES[scan.milestone], "NS", "", "", *_x12_moment(scan.at, scan.place.time_zone)],
        ["MS1", scan.place.city, scan.place.state or "", scan.place.country],
    ]


# --- EDIFACT ----------------------------------------------------------------------------------


def _edi(value: str) -> str:
    """An EDIFACT value with its service characters released."""
    return "".join(f"?{char}" if char in "?+:'" else char for char in value)


def _edifact(sender: str, message_type: str, segments: list[str], control: int, prepared: datetime) -> bytes:
    """One interchange holding one message; ``prepared`` is the sender's local time."""
    body = [f"UNH+1+{message_type}:UN", *segments]
    lines = [
        "UNA:+.? ",
        f"UNB+UNOC:3+{sender}:ZZ+{RECEIVER.id}:ZZ+{prepared:%y%m%d:%H%M}+{control}",
        *body,
        f"UNT+{len(body) + 1}+1",
        f"UNZ+1+{control}",
    ]
    return ("'\n".join(lines) + "'\n").encode("latin-1")


def _edi_time(at: datetime, zone: str) -> str:
    return f"{_local(at, zone):%Y%m%d%H%M}:203"


def _desadv(story: Story, control: int, sent: datetime) -> bytes:
    zone, carrier_ref = story.warehouse.place.time_zone, story.carrier_ref
    segments = [
        f"BGM+351+DES-{story.key}+9",
        f"DTM+137:{_edi_time(sent, zone)}",
        f"DTM+11:{_edi_time(story.shipped_at, zone)}",
        f"DTM+132:{_local(story.estimate, zone):%Y%m%d}:102",
        f"RFF+SRN:{story.shipment}",
        f"RFF+ON:{_edi(story.po)}",
        f"RFF+VN:{story.number}",
        f"RFF+BM:{story.bol}",
        *([f"RFF+AAS:{carrier_ref}"] if story.carrier.mode == "parcel" else []),
        f"NAD+SU+{story.warehouse.edi_id}::92++{_edi(story.warehouse.name)}",
        f"NAD+DP+{story.customer.duns}::16++{_edi(story.customer.name)}",
        f"TDT+20++30++{story.carrier.code}:172:87:{_edi(story.carrier.name)}",
        "CPS+1",
        f"PAC+{len(story.lines)}++CT",
    ]
    for number, (product, quantity) in enumerate(story.lines, start=1):
        segments += [f"LIN+{number}", f"PIA+5+{_edi(product.sku)}:SA", f"QTY+12:{quantity}:{product.uom}"]
    segments.append(f"CNT+2:{len(story.lines)}")
    return _edifact(story.warehouse.edi_id, "DESADV:D:96A", segments, control, _local(sent, zone))


def _iftsta(story: Story, scan: Scan, control: int, sent: datetime) -> bytes:
    zone, place = demo.NRDL.time_zone, scan.place
    locode = LOCODES.get(place.city, "")
    segments = [
        f"BGM+23+ST-{control}+9",
        f"DTM+137:{_edi_time(sent, zone)}",
        f"NAD+CA+NRDL::87++{_edi(demo.NRDL.name)}",
        f"RFF+ON:{_edi(story.po)}",
        f"CNI+1+{story.shipment}",
        f"RFF+BM:{story.bol}",
        f"STS+1+{IFTSTA_CODES[scan.milestone]}",
        f"DTM+334:{_edi_time(scan.at, zone)}",
        f"LOC+175+{locode}:139:6:{_edi(place.city)}",
    ]
    return _edifact("NRDL", "IFTSTA:D:01B", segments, control, _local(sent, zone))


# --- aggregator webhook and CSV export --------------------------------------------------------


def _zulu(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _easypost(story: Story, scans: list[Scan], sent: datetime) -> bytes:
    """A ``tracker.updated`` Event: the whole tracker, every checkpoint so far (minified)."""
    label = Scan("label", story.shipped_at, story.warehouse.place)
    details = [_easypost_detail(scan) for scan in [label, *scans]]
    status, detail, _ = EASYPOST_STATUSES[scans[-1].milestone]
    event_id = hashlib.sha256(f"{story.key}:{len(scans)}:{sent.isoformat()}".encode()).hexdigest()[:24]
    tracker = {
        "object": "Tracker",
        "id": f"trk_{story.key.replace('-', '')}",
        "tracking_code": story.carrier_ref,
        "status": status,
        "status_detail": detail,
        "carrier": story.carrier.code,
        "created_at": _zulu(story.shipped_at),
        "updated_at": _zulu(scans[-1].at),
        "est_delivery_date": _zulu(story.estimate),
        "tracking_details": details,
    }
    event = {
        "object": "Event",
        "id": f"evt_{event_id}",
        "description": "tracker.updated",
        "mode": "production",
        "created_at": _zulu(sent),
        "result": tracker,
    }
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode()


def _easypost_detail(scan: Scan) -> dict[str, Any]:
    status, detail, message = EASYPOST_STATUSES[scan.milestone]
    place = scan.place
    return {
        "object": "TrackingDetail",
        "message": message,
        "status": status,
        "status_detail": detail,
        "datetime": _iso(scan.at, place.time_zone),
        "tracking_location": {
            "object": "TrackingLocation",
            "city": place.city,
            "state": place.state,
            "country": place.country,
            "zip": None,
        },
    }


def _csv_row(story: Story, scan: Scan) -> str:
    local = _local(scan.at, demo.EUPL.time_zone)
    cells = [story.carrier_ref, CSV_STATUSES[scan.milestone], local.strftime(CSV_TIME_FORMAT)]
    return ";".join([*cells, scan.place.city, scan.place.country, story.number])


def _csv_exports(stream: _Stream) -> None:
    """EUPL exports every status of the last four hours in one file."""
    exports: dict[datetime, list[tuple[str, str | None]]] = {}
    for sent, row, fault in sorted(stream.csv_rows, key=lambda item: item[0]):
        bucket = DEFAULT_START + ((sent - DEFAULT_START) // CSV_EXPORT_EVERY + 1) * CSV_EXPORT_EVERY
        exports.setdefault(bucket, []).append((row, fault))
    header = ";".join(CSV_COLUMNS.values())
    for at, rows in exports.items():
        body = "\r\n".join([header, *(row for row, _ in rows)]) + "\r\n"
        fault = next((fault for _, fault in rows if fault), None)
        name = f"eupl-status-{at:%Y%m%d-%H%M}-{stream.seed}.csv"
        stream.add(STATUS_CSV, "csv", body.encode(), at, filename=name, fault=fault)


# --- stock: the warehouse's count and the ERP's book ---------------------------------------------


def _stock_reports(stream: _Stream, stories: list[Story]) -> None:
    """Twice a day DC-ATL's stock (X12 846) and, an hour later, the ERP's book of it (canonical
    JSON). The warehouse takes stock out when it ships, the ERP when it invoices: book runs ahead
    of on hand by what is shipped and not invoiced yet, the drift a real integration shows."""
    atlanta = [story for story in stories if story.warehouse.code == ASN_856.partner]
    if not atlanta:
        return
    warehouse = atlanta[0].warehouse
    products = sorted({product for story in atlanta for product, _ in story.lines}, key=lambda p: p.sku)
    last = max(message.sent_at for message in stream.messages)
    at = DEFAULT_START + STOCK_EVERY
    while at <= last:
        shipped = [story for story in atlanta if story.depth >= SHIPPED and story.shipped_at <= at]
        invoiced = [story for story in atlanta if story.depth >= INVOICED and story.invoiced_at <= at]
        on_hand, book = _stock_left(shipped, products), _stock_left(invoiced, products)
        sender, zone = Party("ZZ", warehouse.edi_id), warehouse.place.time_zone
        body = _846(on_hand, at, zone)
        stream.add(ASN_856, "x12", _x12(sender, "IB", "846", body, stream, at, zone=zone), at + timedelta(minutes=5))
        event_id = f"erp-book-{warehouse.code}-{at:%Y%m%d%H%M}"
        event = {
            "event_id": event_id,
            "kind": "inventory.snapshot",
            "occurred_at": _iso(at, demo.ERP.time_zone),
            "lines": [
                {"sku": product.sku, "quantity": str(quantity), "uom": product.uom} for product, quantity in book
            ],
            "attributes": {"warehouse": warehouse.code},
        }
        stream.add(ERP_EVENTS, "json", json.dumps({"events": [event]}).encode(), at + timedelta(hours=1), key=event_id)
        at += STOCK_EVERY


def _stock_left(gone: list[Story], products: list[demo.Product]) -> list[tuple[demo.Product, int]]:
    """The opening stock less the lines of the ``gone`` stories."""
    out: Counter[str] = Counter()
    for story in gone:
        out.update({product.sku: quantity for product, quantity in story.lines})
    return [(product, OPENING_STOCK - out[product.sku]) for product in products]


def _846(stock: list[tuple[demo.Product, int]], at: datetime, zone: str) -> list[list[str]]:
    moment = _x12_moment(at, zone)
    body = [["BIA", "00", "MM", f"STOCK-{moment[0]}{moment[1]}", moment[0], moment[1]]]
    for number, (product, quantity) in enumerate(stock, start=1):
        body += [["LIN", str(number), "SK", product.sku], ["QTY", "17", str(quantity), product.uom]]
    return [*body, ["CTT", str(len(stock))]]


# --- message faults: resends, truncated X12, broken JSON ---------------------------------------


def _message_faults(messages: list[SimMessage], rng: random.Random) -> list[SimMessage]:
    clean = [index for index, message in enumerate(messages) if message.fault is None]
    extra = [_duplicate(messages[i], rng) for i in rng.sample(clean, max(1, round(len(messages) * DUPLICATE_SHARE)))]
    malformed = max(1, len(messages) // MALFORMED_EVERY)
    x12 = [m for m in messages if m.format == "x12" and m.fault is None]
    erp = [m for m in messages if m.route == API_EVENTS and m.fault is None]
    extra += [_truncated(message, rng) for message in rng.sample(x12, min(malformed, len(x12)))]
    for position, message in enumerate(rng.sample(erp, min(2 * malformed, len(erp)))):
        extra.append(_broken_json(message, rng, API_MESSAGES if position % 2 == 0 else API_EVENTS))
    return sorted([*messages, *extra], key=lambda message: message.sent_at)


def _renamed(filename: str, tag: str) -> str:
    stem, dot, extension = filename.rpartition(".")
    return f"{stem}-{tag}{dot}{extension}" if filename else ""


def _duplicate(message: SimMessage, rng: random.Random) -> SimMessage:
    """The same bytes again, later (a partner's retry); files come back under a new name."""
    later = message.sent_at + timedelta(minutes=rng.randint(5, 240))
    return replace(message, sent_at=later, filename=_renamed(message.filename, "resend"), fault="duplicate")


def _truncated(message: SimMessage, rng: random.Random) -> SimMessage:
    """The transfer broke off after the ISA, before the first set; the full file follows."""
    cut = rng.randint(110, message.body.index(b"ST*") - 2)
    earlier = message.sent_at - timedelta(minutes=rng.randint(1, 30))
    filename = _renamed(message.filename, "partial")
    return replace(message, body=message.body[:cut], sent_at=earlier, filename=filename, fault="truncated_x12")


def _broken_json(message: SimMessage, rng: random.Random, route: str) -> SimMessage:
    """A JSON body cut short, sent before the good one (raw to the message API, or as events)."""
    cut = round(len(message.body) * rng.uniform(0.3, 0.8))
    earlier = message.sent_at - timedelta(minutes=rng.randint(1, 30))
    return replace(
        message, route=route, body=message.body[:cut], idempotency_key=None, sent_at=earlier, fault="broken_json"
    )


# --- sending ----------------------------------------------------------------------------------


@dataclass
class Tally:
    """What the receivers answered: stored, duplicate (200), refused with reasons; files dropped."""

    sent: int = 0
    stored: int = 0
    duplicates: int = 0
    dropped: int = 0
    refused: Counter[str] = field(default_factory=Counter)
    answers: list[str] = field(default_factory=list)

    def record(self, status: int, body: bytes) -> None:
        self.sent += 1
        if status == 202:
            answer = "stored"
            self.stored += 1
        elif status == 200:
            answer = "duplicate"
            self.duplicates += 1
        else:
            answer = f"refused: {status} {_reason(body)}"
            self.refused[answer.removeprefix("refused: ")] += 1
        self.answers.append(answer)

    def line(self) -> str:
        refused = "; ".join(f"{count}x {reason}" for reason, count in self.refused.most_common()) or "none"
        files = f", {self.dropped} inbox files" if self.dropped else ""
        return f"sent {self.sent}{files}: {self.stored} stored, {self.duplicates} duplicates (200), refused: {refused}"


def _reason(body: bytes) -> str:
    """The receiver's explanation: ``detail``, or the first problem it listed."""
    try:
        data = json.loads(body)
    except ValueError:
        return body[:100].decode(errors="replace")
    if isinstance(data, dict):
        data = data.get("detail") or data.get("errors") or data.get("body") or data
    if isinstance(data, list) and data:
        data = data[0]
    return str(data)[:100]


def _request_parts(message: SimMessage, simulation: Simulation) -> tuple[str, dict[str, str]]:
    """The path and headers of an HTTP message (signed afresh for webhooks)."""
    content_type = CONTENT_TYPES.get(message.format, "application/json")
    if message.route == WEBHOOK:
        stamp, signature = simulation.sign(message)
        path = f"/hooks/{message.partner}/{message.channel}/"
        return path, {"Content-Type": content_type, "X-Timestamp": stamp, "X-Signature": signature}
    headers = {"Content-Type": content_type, "Authorization": f"Bearer {simulation.tokens[message.partner]}"}
    if message.idempotency_key:
        headers["Idempotency-Key"] = message.idempotency_key
    if message.route == API_EVENTS:
        return f"/api/v1/events/?{urlencode({'channel': message.channel})}", headers
    query = urlencode({"format": message.format, "channel": message.channel})
    return f"/api/v1/messages/?{query}", headers


def drop_files(messages: Iterable[SimMessage], inbox_dir: Path) -> int:
    """Write inbox messages to ``<inbox_dir>/<partner>/<channel>/<filename>``; returns how many."""
    written = 0
    for message in messages:
        if message.route != INBOX:
            continue
        folder = Path(inbox_dir) / message.partner / message.channel
        folder.mkdir(parents=True, exist_ok=True)
        partial = folder / f".{message.filename}.part"  # pollers skip dot files until the rename
        partial.write_bytes(message.body)
        partial.rename(folder / message.filename)
        written += 1
    return written


def send_http(
    messages: Sequence[SimMessage],
    base_url: str,
    simulation: Simulation,
    rate: float,
    *,
    inbox_dir: Path | None = None,
    until: float | None = None,
) -> Tally:
    """Send ``messages`` to a running server at ``rate`` per second, stopping at ``until``
    (``time.monotonic()``); inbox messages become files in ``inbox_dir`` (skipped without one)."""
    tally = Tally()
    due = time.monotonic()
    for message in messages:
        if until is not None and due >= until:
            break
        time.sleep(max(0.0, due - time.monotonic()))
        due += 1 / rate
        if message.route == INBOX:
            tally.dropped += drop_files([message], inbox_dir) if inbox_dir else 0
            continue
        tally.record(*_post_with_retries(message, base_url.rstrip("/"), simulation))
    return tally


def _post_with_retries(message: SimMessage, base_url: str, simulation: Simulation) -> tuple[int, bytes]:
    """Post once, and again (bounded, with backoff) while the server refuses the connection or fails."""
    status, body = _post(message, base_url, simulation)
    for attempt in range(RETRIES):
        if 0 < status < 500:
            break
        time.sleep(RETRY_DELAY * 2**attempt)
        status, body = _post(message, base_url, simulation)
    return status, body


def _post(message: SimMessage, base_url: str, simulation: Simulation) -> tuple[int, bytes]:
    path, headers = _request_parts(message, simulation)
    request = urllib.request.Request(base_url + path, data=message.body, headers=headers, method="POST")  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT) as response:  # noqa: S310 - base URL checked
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
        return 0, json.dumps({"detail": f"unreachable: {getattr(exc, 'reason', exc)}"}).encode()


def send_in_process(messages: Iterable[SimMessage], client: Any, simulation: Simulation) -> Tally:
    """Send through a Django or DRF test client; inbox files go to ``settings.INBOX_DIR`` and are
    polled at once, so the stream keeps its order. A polled file that stored nothing is a duplicate."""
    tally = Tally()
    for message in messages:
        if message.route == INBOX:
            drop_files([message], settings.INBOX_DIR)
            tally.dropped += 1
            tally.record(202 if services.inbox_poll(settings.INBOX_DIR) else 200, b"")
            continue
        path, headers = _request_parts(message, simulation)
        content_type = headers.pop("Content-Type")
        meta = {f"HTTP_{name.upper().replace('-', '_')}": value for name, value in headers.items()}
        response = client.post(path, data=message.body, content_type=content_type, **meta)
        tally.record(response.status_code, response.content)
    return tally


def stream_summary(messages: Sequence[SimMessage]) -> dict[str, Counter[str]]:
    """Counts by format and by fault, for printing."""
    return {
        "formats": Counter(f"{message.partner}/{message.format}" for message in messages),
        "faults": Counter(message.fault for message in messages if message.fault),
    }

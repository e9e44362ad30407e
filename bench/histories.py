"""Order lives as canonical JSON events, for the scale benchmark: realistic, seeded and streamed.

Each order goes from ``order.created`` to ``invoice.generated`` through the warehouse and a
carrier, as its partners would tell it: the ERP, two warehouses and four carriers each send their
own files of 2,000 events. The messiness a control tower lives with is there on purpose:

- two sales orders per customer PO, and some picks that name only the PO;
- consolidated shipments (one truck, two orders: the manifest names both, its lines say which);
- carrier scans that name only the tracking number, and files that arrive before the ones they
  depend on (events are shuffled over a window of orders), so some events park for a while;
- about 2% of events sent again in a later file (same ``event_id``);
- orders created in the last days are still under way: nothing later than ``anchor`` exists.

Generation streams: orders are made a window at a time and written out as each partner's file
fills, so a million orders (about eleven million events, 3 GB of files) need no more memory than
a few thousand. The list of files, in the interleaved order they are to be ingested, goes to
``manifest.jsonl``. Nothing here imports Django: the generator runs without a database.
"""

import json
import random
import shutil
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

FILE_EVENTS = 2000
WINDOW_ORDERS = 4000  # orders whose events are shuffled together (feeds interleave over this span)
RESEND_RATE = 0.02
CONSOLIDATION_RATE = 0.18  # of PO pairs shipped on one truck: about 10% of shipments carry two orders
PO_ONLY_PICK_RATE = 0.2
TRACKING_ONLY_SCAN_RATE = 0.04
SKUS = 5000
MANIFEST = "manifest.jsonl"


@dataclass(frozen=True)
class Region:
    name: str
    warehouse: str
    currency: str
    cities: tuple[tuple[str, str], ...]


ERP = "BX-ERP"
CARRIERS = ("BX-CAR1", "BX-CAR2", "BX-CAR3", "BX-CAR4")
CARRIER_PREFIXES = {"BX-CAR1": "1Z", "BX-CAR2": "JD", "BX-CAR3": "94", "BX-CAR4": "TB"}
CUSTOMERS = tuple(f"BX-CUS{n:02d}" for n in range(1, 25))
REGIONS = (
    Region("EU-West", "BX-WMS-EU", "EUR", (("Lyon", "FR"), ("Paris", "FR"), ("Lille", "FR"), ("Madrid", "ES"))),
    Region("EU-Central", "BX-WMS-EU", "EUR", (("Frankfurt", "DE"), ("Munich", "DE"), ("Vienna", "AT"))),
    Region("US-East", "BX-WMS-US", "USD", (("Newark", "US"), ("Atlanta", "US"), ("Boston", "US"))),
    Region("US-West", "BX-WMS-US", "USD", (("Reno", "US"), ("Ontario", "US"), ("Portland", "US"))),
)
WAREHOUSES = tuple(sorted({region.warehouse for region in REGIONS}))
# Who is who, for the benchmark's setup (``manage.py partner CODE --kind KIND``).
PARTNER_KINDS = {
    ERP: "erp",
    **dict.fromkeys(WAREHOUSES, "warehouse"),
    **dict.fromkeys(CARRIERS, "carrier"),
    **dict.fromkeys(CUSTOMERS, "customer"),
}
SENDERS = (ERP, *WAREHOUSES, *CARRIERS)


@dataclass(frozen=True)
class HistorySpec:
    """One set of order lives. Sets with different tags share no number, reference or event id."""

    orders: int
    tag: str
    anchor: datetime  # "now" for the set: no event is later
    seed: int = 7
    days: int = 60  # orders are created over the days before the anchor...
    quiet_days: int = 0  # ...except the last ones (a set whose lives are all under way for long)
    consolidation: float = CONSOLIDATION_RATE
    exclude: frozenset[str] = frozenset()  # kinds left out (lives that stop before a milestone)
    window: int = WINDOW_ORDERS
    file_events: int = FILE_EVENTS


@dataclass
class FileEntry:
    """One file to ingest: who sends it, and which of its events are re-sends of earlier ones."""

    partner: str
    path: str  # relative to the set's folder
    events: int
    resent: list[int] = field(default_factory=list)


@dataclass
class Summary:
    root: Path
    orders: int = 0
    shipments: int = 0
    events: int = 0  # every event written, re-sends included
    resent: int = 0
    files: int = 0
    kinds: Counter = field(default_factory=Counter)

    @property
    def unique(self) -> int:
        return self.events - self.resent


Sent = tuple[str, dict[str, Any]]  # (sending partner, event)


# --- one PO: two sales orders, their shipments, freight and invoices ------------------------------


class _Life:
    """The events of one PO pair, built in time order and cut at the anchor."""

    def __init__(self, spec: HistorySpec, rng: random.Random, pair: int) -> None:
        self.spec, self.rng, self.pair = spec, rng, pair
        self.sent: list[Sent] = []
        self.shipments = 0

    def event(
        self, partner: str, key: str, kind: str, at: datetime, refs: list[tuple[str, str]], **fields: Any
    ) -> None:
        if at > self.spec.anchor or kind in self.spec.exclude:
            return
        body = {
            "event_id": f"{self.spec.tag}{self.pair:07d}-{key}",
            "kind": kind,
            "schema_version": 1,
            "occurred_at": at.replace(microsecond=0).isoformat(),
            "references": [{"kind": k, "value": v} for k, v in refs],
            **fields,
        }
        self.sent.append((partner, body))

    def hours(self, low: float, high: float) -> timedelta:
        return timedelta(hours=self.rng.uniform(low, high))


def _number(spec: HistorySpec, n: int) -> str:
    return f"{spec.tag}{n:07d}"


def _created_at(spec: HistorySpec, rng: random.Random, pair: int) -> datetime:
    """Orders numbers grow with time, as in a real ERP; a little jitter keeps them from lining up."""
    span = spec.days - spec.quiet_days
    start = spec.anchor - timedelta(days=spec.days)
    pairs = max(1, (spec.orders + 1) // 2)
    # The last orders are created a day before the anchor: every order of the set exists.
    return start + timedelta(days=(span - 1) * pair / pairs, hours=rng.uniform(0, 8))


def _order(life: _Life, n: int, po: str, region: Region, customer: str, created: datetime) -> tuple[datetime, dict]:
    """The ERP and warehouse part of one order's life; returns when it was packed and its header."""
    rng, spec = life.rng, life.spec
    so = f"SO-{_number(spec, n)}"
    lines = [
        {
            "sku": f"SKU-{rng.randrange(SKUS):05d}",
            "quantity": str(rng.choice((1, 1, 2, 2, 3, 5, 10, 24))),
            "uom": "EA",
            "unit_price": str(Decimal(rng.randrange(199, 25000)) / 100),
            "line_number": str(number),
        }
        for number in range(1, rng.choice((1, 1, 2, 2, 3, 4)) + 1)
    ]
    promised = created + timedelta(days=rng.choice((3, 4, 5, 5, 7)), hours=rng.uniform(0, 8))
    header = {"customer": customer, "promised_at": promised.replace(microsecond=0).isoformat(), "region": region.name}
    key = f"{n % 2}"
    life.event(ERP, f"{key}-cr", "order.created", created, [("order", so), ("po", po)], lines=lines, order=header)
    at = created + life.hours(0.5, 6)
    life.event(ERP, f"{key}-rl", "order.released", at, [("order", so)])
    if rng.random() < 0.3:
        at += life.hours(0.2, 2)
        life.event(region.warehouse, f"{key}-al", "order.allocated", at, [("order", so)])
    at += life.hours(2, 26)
    # The first order of the PO sometimes has its pick reported against the PO alone.
    po_only = n % 2 == 0 and rng.random() < PO_ONLY_PICK_RATE
    life.event(region.warehouse, f"{key}-pk", "order.picked", at, [("po", po)] if po_only else [("order", so)])
    at += life.hours(0.5, 4)
    life.event(region.warehouse, f"{key}-pa", "order.packed", at, [("order", so)])
    amount = sum(Decimal(line["quantity"]) * Decimal(line["unit_price"]) for line in lines)
    return at, {"key": key, "so": so, "lines": lines, "amount": amount}


def _shipment(life: _Life, n: int, region: Region, carrier: str, packed: datetime, orders: list[dict]) -> datetime:
    """A shipment's life from manifest to proof of delivery, and its freight; returns delivery time."""
    rng, spec = life.rng, life.spec
    number = _number(spec, n)
    sh, tracking = f"SH-{number}", f"{CARRIER_PREFIXES[carrier]}{number}"
    life.shipments += 1
    consolidated = len(orders) > 1
    lines = [
        {"sku": line["sku"], "quantity": line["quantity"], "uom": "EA", **({"order": o["so"]} if consolidated else {})}
        for o in orders
        for line in o["lines"]
    ]
    refs = [("shipment", sh), ("tracking", tracking), *(("order", o["so"]) for o in orders)]
    at = packed + life.hours(0.5, 6)
    attributes = {"carrier": carrier, "warehouse": region.warehouse}
    life.event(region.warehouse, f"{n}-mf", "shipment.manifested", at, refs, lines=lines, attributes=attributes)
    if rng.random() < 0.15:
        life.event(carrier, f"{n}-ta", "shipment.tracking_assigned", at + life.hours(0.1, 0.5), refs[:2])

    def scan(key: str, kind: str, when: datetime, **fields: Any) -> None:
        only_tracking = rng.random() < TRACKING_ONLY_SCAN_RATE
        life.event(carrier, f"{n}-{key}", kind, when, refs[1:2] if only_tracking else refs[:2], **fields)

    at += life.hours(2, 12)
    scan("pu", "shipment.picked_up", at)
    for hop in range(rng.choice((1, 1, 1, 2, 2, 3))):
        at += life.hours(6, 30)
        city, country = rng.choice(region.cities)
        scan(f"it{hop}", "shipment.in_transit", at, location={"city": city, "country": country})
    at += life.hours(4, 24)
    scan("od", "shipment.out_for_delivery", at)
    at += life.hours(1, 8)
    delivered = at
    scan("dl", "shipment.delivered", delivered)
    if rng.random() < 0.3:
        scan("pd", "shipment.pod_received", delivered + life.hours(1, 30))
    if rng.random() < 0.25:
        _freight(life, n, refs[:1], carrier, delivered, region.currency)
    return delivered


def _freight(life: _Life, n: int, refs: list[tuple[str, str]], carrier: str, delivered: datetime, cur: str) -> None:
    rng, number = life.rng, _number(life.spec, n)
    refs = [*refs, ("pro", f"PRO{number}")]
    amount = str(Decimal(rng.randrange(900, 60000)) / 100)
    attributes = {"carrier": carrier, "charge_number": f"FC-{number}"}
    posted = delivered + life.hours(24, 120)
    money = {"amount": amount, "currency": cur, "attributes": {**attributes, "quoted_amount": amount}}
    life.event(carrier, f"{n}-fp", "freight.charge_posted", posted, refs, **money)
    if rng.random() < 0.8:
        settled = posted + life.hours(120, 480)
        # The shipper settles the charge: its ERP (or TMS), which the carrier may not speak for.
        life.event(ERP, f"{n}-fs", "freight.charge_settled", settled, refs, attributes=attributes)


def _pair(spec: HistorySpec, rng: random.Random, pair: int) -> _Life:
    """Two sales orders under one customer PO, shipped apart or, sometimes, on one truck."""
    life = _Life(spec, rng, pair)
    region = rng.choice(REGIONS)
    customer = rng.choice(CUSTOMERS)
    carrier = rng.choice(CARRIERS)
    po = f"PO-{_number(spec, pair)}"
    created = _created_at(spec, rng, pair)
    numbers = [n for n in (2 * pair, 2 * pair + 1) if n < spec.orders]
    orders = []
    for n in numbers:
        second = n % 2 == 1
        packed, order = _order(life, n, po, region, customer, created + (life.hours(0, 10) if second else timedelta()))
        orders.append((n, packed, order))
    if len(orders) == 2 and rng.random() < spec.consolidation:
        groups = [(orders[0][0], max(o[1] for o in orders), [o[2] for o in orders])]
    else:
        groups = [(n, packed, [order]) for n, packed, order in orders]
    for n, packed, shipped in groups:
        delivered = _shipment(life, n, region, carrier, packed, shipped)
        invoiced = delivered + life.hours(6, 72)
        for order in shipped:
            refs = [("invoice", f"INV-{order['so'].removeprefix('SO-')}"), ("order", order["so"])]
            money = {"amount": str(order["amount"]), "currency": region.currency}
            life.event(ERP, f"{order['key']}-iv", "invoice.generated", invoiced, refs, **money)
    return life


# --- streaming into partner files -----------------------------------------------------------------


class _Writer:
    """Partner buffers that become files of ``file_events`` events, listed in the order written."""

    def __init__(self, spec: HistorySpec, root: Path, summary: Summary) -> None:
        self.spec, self.root, self.summary = spec, root, summary
        self.buffers: dict[str, list[dict]] = {partner: [] for partner in SENDERS}
        self.resent: dict[str, list[int]] = {partner: [] for partner in SENDERS}
        self.numbers: Counter[str] = Counter()
        self.manifest = (root / MANIFEST).open("w")

    def file_number(self, partner: str) -> int:
        """The number of the file the partner's next event goes into."""
        return self.numbers[partner]

    def add(self, partner: str, event: dict, *, resent: bool = False) -> None:
        buffer = self.buffers[partner]
        if resent:
            self.resent[partner].append(len(buffer))
        buffer.append(event)
        if len(buffer) >= self.spec.file_events:
            self.flush(partner)

    def flush(self, partner: str) -> None:
        buffer = self.buffers[partner]
        if not buffer:
            return
        folder = self.root / partner
        folder.mkdir(exist_ok=True)
        name = f"{partner}/{self.numbers[partner]:05d}.json"
        (self.root / name).write_text(json.dumps({"events": buffer}, separators=(",", ":")))
        entry = FileEntry(partner=partner, path=name, events=len(buffer), resent=self.resent[partner])
        self.manifest.write(json.dumps(entry.__dict__) + "\n")
        self.summary.files += 1
        self.numbers[partner] += 1
        self.buffers[partner], self.resent[partner] = [], []

    def close(self) -> None:
        for partner in SENDERS:
            self.flush(partner)
        self.manifest.close()


def write_histories(spec: HistorySpec, root: Path) -> Summary:
    """Write the set's files under ``root`` (emptied first) and return what was written."""
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    rng = random.Random(f"{spec.seed}-{spec.tag}")
    summary = Summary(root=root, orders=spec.orders)
    writer = _Writer(spec, root, summary)
    # Re-sends wait until their partner has moved on to a later file than the original's.
    resends: list[tuple[int, Sent]] = []
    pairs = (spec.orders + 1) // 2
    step = max(1, spec.window // 2)
    for first in range(0, pairs, step):
        window: list[Sent] = []
        for pair in range(first, min(pairs, first + step)):
            life = _pair(spec, rng, pair)
            window += life.sent
            summary.shipments += life.shipments
        rng.shuffle(window)
        resends = _send_resends(writer, resends, summary)
        for partner, event in window:
            file_number = writer.file_number(partner)
            writer.add(partner, event)
            summary.events += 1
            summary.kinds[event["kind"]] += 1
            if rng.random() < RESEND_RATE:
                resends.append((file_number, (partner, event)))
    for partner in SENDERS:
        writer.flush(partner)
    _send_resends(writer, resends, summary)
    writer.close()
    return summary


def _send_resends(writer: _Writer, resends: list[tuple[int, Sent]], summary: Summary) -> list[tuple[int, Sent]]:
    """Send the re-sends whose original is in an earlier file; return those that must wait."""
    waiting = []
    for file_number, (partner, event) in resends:
        if writer.file_number(partner) == file_number:
            waiting.append((file_number, (partner, event)))
            continue
        writer.add(partner, event, resent=True)
        summary.events += 1
        summary.resent += 1
    return waiting


def read_manifest(root: Path) -> Iterator[FileEntry]:
    """The set's files in the order they are to be ingested."""
    with (root / MANIFEST).open() as lines:
        for line in lines:
            yield FileEntry(**json.loads(line))


def read_events(root: Path, entry: FileEntry) -> list[dict[str, Any]]:
    return json.loads((root / entry.path).read_bytes())["events"]

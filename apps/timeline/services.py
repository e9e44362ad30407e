"""Applying canonical events to the timeline: correlate, append, park, project.

``apply_events`` is the only writer of orders, shipments, references and milestones. It is
idempotent (a milestone per ``event_id``) and order-independent: projections are recomputed from
the whole set of milestones of every order and shipment a batch touched, so any arrival order or
duplication of the same events converges on the same state.
"""

import logging
import time
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import chain
from typing import NamedTuple

from django.db import IntegrityError, OperationalError, connection, transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from apps.partners.models import Channel, Partner
from apps.timeline import projections, reactions, scopes
from apps.timeline.bulk import delete_rows, insert_new, row_sources
from apps.timeline.events import (
    ORDER_REFERENCE_KINDS,
    ORDER_REFERENCE_STRENGTH,
    SHIPMENT_REFERENCE_KINDS,
    SHIPMENT_REFERENCE_STRENGTH,
    CanonicalEvent,
    EventKey,
    EventKind,
    EventReference,
    ReferenceKind,
    load_stored_event,
    load_stored_event_json,
)
from apps.timeline.models import (
    Identity,
    Milestone,
    MilestoneReport,
    Order,
    ParkedEvent,
    ParkedReference,
    Reference,
    Shipment,
    ShipmentOrderClaim,
    identity,
    pks_by_identity,
)
from apps.timeline.stages import timed

logger = logging.getLogger(__name__)
RefKey = tuple[str, str]
TASK_BATCH_SIZE = 500
CRITICAL_KINDS = frozenset(
    {EventKind.SHIPMENT_MANIFESTED, EventKind.SHIPMENT_DELIVERED, EventKind.SHIPMENT_POD_RECEIVED}
)
BULK_KINDS = frozenset(
    {
        EventKind.SHIPMENT_IN_TRANSIT,
        EventKind.SHIPMENT_ETA_UPDATED,
        EventKind.INVENTORY_SNAPSHOT,
        EventKind.INVENTORY_ADJUSTED,
    }
)

# How long before an event was parked a reference may have been created and still not committed.
IN_FLIGHT = timedelta(hours=1)
# A retry after commit that deadlocks with another worker's is tried this often, pausing a little longer each time.
AFTER_COMMIT_ATTEMPTS = 3
AFTER_COMMIT_PAUSE = 0.1
PARKED_COLUMNS = ["event_id", "kind", "occurred_at", "parked_at", "source_partner_id", "payload"]

# Families whose order-level references all name the one order the event is about.
ORDER_FAMILIES = frozenset({"order", "invoice", "return"})
# Families whose shipment-level references all name the one shipment the event is about.
SHIPMENT_FAMILIES = frozenset({"shipment", "freight"})


@dataclass
class ApplyResult:
    """What one ``apply_events`` call did, by event key (source and id), and which subjects it touched."""

    applied: list[EventKey] = field(default_factory=list)
    duplicates: list[EventKey] = field(default_factory=list)
    parked: list[EventKey] = field(default_factory=list)
    unparked: list[EventKey] = field(default_factory=list)
    rejected: dict[EventKey, str] = field(default_factory=dict)
    # Out of its sender's scope (or dated in the future): never applied; a message holding one is
    # refused whole.
    refused: dict[EventKey, str] = field(default_factory=dict)
    order_ids: set[int] = field(default_factory=set)
    shipment_ids: set[int] = field(default_factory=set)
    created_orders: int = 0
    created_shipments: int = 0

    def add(self, other: "ApplyResult") -> None:
        """Count ``other``, an apply after this one, in this result."""
        for name in ("applied", "duplicates", "parked", "unparked"):
            getattr(self, name).extend(getattr(other, name))
        self.rejected |= other.rejected
        self.refused |= other.refused
        self.order_ids |= other.order_ids
        self.shipment_ids |= other.shipment_ids
        self.created_orders += other.created_orders
        self.created_shipments += other.created_shipments


class Target(NamedTuple):
    """What one reference points at; ``number`` breaks ties between several, deterministically."""

    order_id: int | None
    shipment_id: int | None
    number: str


@dataclass
class _Batch:
    """Lookups shared by the rounds of one apply: partners, channels and resolved references."""

    partners: dict[str, Partner]
    channels: dict[tuple[str, str], Channel]
    references: dict[RefKey, set[Target]] = field(default_factory=dict)
    recorded: list[Milestone] = field(default_factory=list)
    created_order_ids: set[int] = field(default_factory=set)  # orders given an order.created milestone
    parked_keys: set[RefKey] = field(default_factory=set)
    gained_keys: set[RefKey] = field(default_factory=set)
    parked_since: dict[EventKey, datetime] = field(default_factory=dict)  # of events taken out of parking

    def targets(self, ref: EventReference) -> set[Target]:
        return self.targets_of((ref.kind.value, ref.value))

    def targets_of(self, key: RefKey) -> set[Target]:
        return self.references.get(key, set())


def apply_events(
    events: Iterable[CanonicalEvent], *, parked_since: Mapping[EventKey, datetime] | None = None
) -> ApplyResult:
    """Apply a batch of canonical events in one transaction and return what it touched.

    Duplicates (already applied or already parked, or repeated in the batch) change nothing.
    Events whose references match nothing yet are parked and applied automatically, in the same
    call, as soon as a reference they carry appears. ``parked_since`` gives events taken out of
    parking their first parking time, which they keep if they are parked again.
    """
    result = ApplyResult()
    with timed("apply"), transaction.atomic():
        pending = _without_duplicates(list(events), result)
        batch = _load_batch(pending)
        batch.parked_since.update(parked_since or {})
        while pending:
            new_keys = _apply_round(pending, batch, result)
            pending = _unpark(new_keys, batch, result)
        result.order_ids |= projections.orders_of_shipments(result.shipment_ids)
        with timed("projections"):
            projections.recompute(
                order_ids=result.order_ids, shipment_ids=result.shipment_ids, created_order_ids=batch.created_order_ids
            )
        touched = reactions.Touched(
            order_ids=set(result.order_ids), shipment_ids=set(result.shipment_ids), milestones=batch.recorded
        )
        reactions.run_in_transaction(touched)
        still_parked = set(result.parked)
        result.unparked = [key for key in result.unparked if key not in still_parked]
        reactions.after_commit(touched)
        if batch.parked_keys or batch.gained_keys:
            gained, seen = set(batch.gained_keys), _targets_seen(batch.parked_keys, batch)
            transaction.on_commit(lambda: _retry_after_commit(lambda: gained | _gained_since(seen)))
    return result


def _retry_after_commit(keys: Callable[[], set[RefKey]]) -> None:
    """``retry_parked_events`` over ``keys()``, tried again when it collides with another worker.

    Two workers taking the same parked events while creating the same references can deadlock;
    the transaction PostgreSQL picks to fail must not leave its events to the periodic run, nor
    raise into the commit hooks after it (the unit of work's reactions among them).
    """
    for attempt in range(1, AFTER_COMMIT_ATTEMPTS + 1):
        try:
            retry_parked_events(keys=keys())
            return
        except (OperationalError, IntegrityError) as exc:
            if attempt == AFTER_COMMIT_ATTEMPTS:
                logger.warning("parked events left to the periodic retry after %d attempts: %s", attempt, exc)
                return
            time.sleep(AFTER_COMMIT_PAUSE * attempt)


def retry_parked_events(*, keys: set[RefKey] | None = None, limit: int = 5000) -> ApplyResult:
    """Apply parked events whose references match by now (only those carrying ``keys``, if given).

    Catches a reference that appeared while the event was being parked: two workers crossing,
    each parking what the other has not committed yet. After its commit, every apply runs it
    over the references it created and over those of the events it parked that another
    transaction gave a subject meanwhile, so whichever of the two commits last finds the other's
    rows; the periodic run (no ``keys``) is the safety net, over the references that appeared
    since each event was parked. Events that still match nothing stay parked, with their
    original parking time.
    """
    if keys is not None and not keys:
        return ApplyResult()
    known = Reference.objects.filter(kind=OuterRef("kind"), value=OuterRef("value"))
    if keys is None:
        # Only a reference that appeared after the event was parked (or was being committed as
        # it was) can make it match. An event whose references all came before waits for a
        # particular subject: taking it out at every run would crowd out, beyond ``limit``, the
        # events the run is for.
        since_parked = known.filter(created_at__gte=OuterRef("parked_event__parked_at") - IN_FLIGHT)
        parked = ParkedReference.objects.filter(Exists(since_parked))
        ids = sorted(set(parked.values_list("parked_event_id", flat=True)[:limit]))
    else:
        # Every event waiting for these keys, however many: a ship notice of 2,000 shipments can
        # free more than ``limit`` of them, and those left behind would wait for the periodic run.
        parked = ParkedReference.objects.filter(Exists(known), value__each={value for _, value in keys})
        rows = parked.values_list("parked_event_id", "kind", "value")
        ids = sorted({parked_id for parked_id, kind, value in rows if (kind, value) in keys})
    result = ApplyResult()
    for start in range(0, len(ids), limit):
        result.add(_retry_parked(ids[start : start + limit]))
    return result


def _retry_parked(ids: list[int]) -> ApplyResult:
    with transaction.atomic():
        rows = ParkedEvent.objects.select_for_update(skip_locked=True).filter(pk__any=ids)
        events, parked_since = _take_parked(list(rows.values_list("pk", flat=True)))
        return apply_events(events, parked_since=parked_since)


def scope_violations(events: Sequence[CanonicalEvent]) -> dict[EventKey, str]:
    """Why each event its sender may not send would be refused, by event key. Reads only: the
    receivers' check at the door, so a sender hears at once (the apply checks again)."""
    batch = _load_batch(events)
    _load_references(set(chain.from_iterable(_keys(event.references) for event in events)), batch)
    return scopes.judge(events, batch.partners, _known_subjects(batch)).refused


def enqueue_events(events: Sequence[CanonicalEvent]) -> None:
    """Queue events for a worker to apply, once the current transaction commits.

    Critical events (ship confirmation, delivery, proof of delivery, money) go to the critical
    queue so a backlog of status refreshes never delays them; pure status noise goes to bulk.
    """
    from apps.timeline.tasks import apply_events_task

    by_queue: dict[str, list[dict]] = {}
    for event in events:
        by_queue.setdefault(queue_for(event.kind), []).append(event.to_json())
    for queue, payloads in by_queue.items():
        for start in range(0, len(payloads), TASK_BATCH_SIZE):
            chunk = payloads[start : start + TASK_BATCH_SIZE]
            transaction.on_commit(lambda q=queue, c=chunk: apply_events_task.apply_async(args=[c], queue=q))


def queue_for_events(events: Iterable[CanonicalEvent]) -> str:
    """The queue of a message holding these events: critical if any is, bulk if all are."""
    queues = {queue_for(event.kind) for event in events}
    if "critical" in queues:
        return "critical"
    return "bulk" if queues == {"bulk"} else "default"


def queue_for(kind: EventKind) -> str:
    if kind in CRITICAL_KINDS or kind.family in ("invoice", "freight"):
        return "critical"
    if kind in BULK_KINDS:
        return "bulk"
    return "default"


# --- dedupe and lookups -----------------------------------------------------------------------


def _without_duplicates(events: list[CanonicalEvent], result: ApplyResult) -> list[CanonicalEvent]:
    """An event is a duplicate when its sender already sent its id: another partner's event with
    the same id is another event."""
    unique: dict[EventKey, CanonicalEvent] = {}
    for event in events:
        if event.key in unique:
            result.duplicates.append(event.key)
        else:
            unique[event.key] = event
    ids = {key.event_id for key in unique}
    known = set()
    for model in (Milestone, MilestoneReport, ParkedEvent):
        rows = model.objects.filter(event_id__any=ids).values_list("source_partner__code", "event_id")
        known |= {EventKey(code or "", event_id) for code, event_id in rows}
    result.duplicates.extend(key for key in unique if key in known)
    return [event for key, event in unique.items() if key not in known]


def _load_batch(events: Sequence[CanonicalEvent]) -> _Batch:
    codes = set()
    for event in events:
        codes.add(event.source.partner)
        codes.add(event.attributes.get("carrier"))
        codes.add(event.attributes.get("warehouse"))
        codes.add(event.order.customer if event.order else None)
    codes = {code for code in codes if isinstance(code, str) and code}
    partners = {partner.code: partner for partner in Partner.objects.filter(code__in=codes)}
    channel_keys = {(e.source.partner, e.source.channel) for e in events if e.source.partner and e.source.channel}
    channels = {}
    if channel_keys:
        rows = Channel.objects.filter(
            partner__code__in={p for p, _ in channel_keys}, code__in={c for _, c in channel_keys}
        ).select_related("partner")
        channels = {(row.partner.code, row.code): row for row in rows}
    return _Batch(partners=partners, channels=channels)


def _load_references(keys: set[RefKey], batch: _Batch, *, refresh: bool = False) -> None:
    todo = keys if refresh else {key for key in keys if key not in batch.references}
    if not todo:
        return
    for key in todo:
        batch.references[key] = set()
    rows = Reference.objects.filter(value__each={value for _, value in todo}).values_list(
        "kind", "value", "order_id", "shipment_id", "order__number", "shipment__number"
    )
    for kind, value, order_id, shipment_id, order_number, shipment_number in rows:
        if (kind, value) in todo:
            batch.references[(kind, value)].add(Target(order_id, shipment_id, order_number or shipment_number))


def _keys(refs: Iterable[EventReference]) -> set[RefKey]:
    return {(ref.kind.value, ref.value) for ref in refs}


def _resolve(refs: list[EventReference], strength: Sequence[ReferenceKind], batch: _Batch, attr: str) -> int | None:
    """The order or shipment id that an event's references name, or None.

    The identity kind (order number, shipment number) decides alone when the event carries it:
    a new sales order under an existing customer PO must not be taken for the older order.
    Otherwise the strongest kind that resolves wins; ties go to the lowest number.
    """
    identity = [ref for ref in refs if ref.kind == strength[0]]
    candidates = [
        (strength.index(ref.kind), target.number, getattr(target, attr))
        for ref in identity or refs
        for target in batch.targets(ref)
        if getattr(target, attr)
    ]
    return min(candidates)[2] if candidates else None


def _number(refs: list[EventReference], strength: Sequence[ReferenceKind]) -> str:
    return min((strength.index(ref.kind), ref.value) for ref in refs)[1]


# --- one round: create what is authoritative, resolve, append, park ----------------------------


def _apply_round(events: list[CanonicalEvent], batch: _Batch, result: ApplyResult) -> set[RefKey]:
    """Apply ``events``; return the reference keys that gained a subject (they may unpark events)."""
    all_keys = set(chain.from_iterable(_keys(event.references) for event in events))
    _load_references(all_keys, batch)
    events = _within_scope(events, batch, result)
    before = {key: frozenset(targets) for key, targets in batch.references.items()}

    result.created_orders += _create(ORDERS, events, batch)
    result.created_shipments += _create(SHIPMENTS, events, batch)
    _attach_references(events, batch)

    milestones, applied, parked, links, claims = [], [], [], set(), set()
    for event in events:
        if event.kind.family == "inventory":
            rejection = projections.inventory_rejection(event, batch.partners)
            if rejection:
                result.rejected[event.key] = rejection
            else:
                milestones.append(_milestone(event, batch, order_id=None, shipment_id=None))
                applied.append(event.key)
            continue
        order_id, shipment_id = _subject(event, batch)
        if order_id is None and shipment_id is None:
            parked.append(event)
            continue
        milestones.append(_milestone(event, batch, order_id=order_id, shipment_id=shipment_id))
        applied.append(event.key)
        if order_id:
            result.order_ids.add(order_id)
        if shipment_id:
            result.shipment_ids.add(shipment_id)
            if event.kind.family == "shipment":
                _collect_claims(event, shipment_id, batch, links, claims)

    batch.recorded += _record(milestones, batch)
    result.applied.extend(applied)
    _park(parked, batch, result)
    _save_links(links, claims, result)
    gained = {key for key, targets in batch.references.items() if targets - before.get(key, frozenset())}
    _link_claimed_orders(gained, result)
    batch.gained_keys |= gained
    return gained


def _within_scope(events: list[CanonicalEvent], batch: _Batch, result: ApplyResult) -> list[CanonicalEvent]:
    """The events their senders may send; the others are refused, or parked until their subject
    is known (an order not created yet cannot tell whose it is)."""
    verdict = scopes.judge(events, batch.partners, _known_subjects(batch))
    result.refused.update(verdict.refused)
    _park(verdict.deferred, batch, result)
    return verdict.allowed


def _known_subjects(batch: _Batch) -> scopes.Resolve:
    def known(event: CanonicalEvent) -> tuple[list[int], int | None]:
        """Every known order any order reference names (a notice naming a known PO and an order
        number not seen yet is judged by that PO's order), and the shipment."""
        orders = {
            target.order_id
            for ref in event.references_of(ORDER_REFERENCE_KINDS)
            for target in batch.targets(ref)
            if target.order_id
        }
        shipment_id = SHIPMENTS.resolve(event, batch) if event.references_of(SHIPMENT_REFERENCE_KINDS) else None
        return sorted(orders), shipment_id

    return known


def _subject(event: CanonicalEvent, batch: _Batch) -> tuple[int | None, int | None]:
    """The (order id, shipment id) a milestone hangs on; (None, None) parks the event.

    A shipment or freight event that names a shipment we do not know yet is parked even when its
    order is known: attaching it to the order now and to the shipment later would make the
    timeline depend on arrival order.
    """
    family = event.kind.family
    if family in SHIPMENT_FAMILIES:
        if event.references_of(SHIPMENT_REFERENCE_KINDS):
            return None, SHIPMENTS.resolve(event, batch)
        if family == "freight":
            return None, None
    return ORDERS.resolve(event, batch), None


@dataclass(frozen=True)
class _Subject:
    """Orders and shipments are created and referenced the same way; this says which is which."""

    model: type[Order] | type[Shipment]
    created_by: EventKind
    families: frozenset[str]
    reference_kinds: frozenset[ReferenceKind]
    strength: Sequence[ReferenceKind]
    field: str

    def resolve(self, event: CanonicalEvent, batch: "_Batch") -> int | None:
        return _resolve(event.references_of(self.reference_kinds), self.strength, batch, self.field)

    def reference(self, ref: EventReference, subject_id: int) -> Reference:
        return Reference(kind=ref.kind.value, value=ref.value, **{self.field: subject_id})


ORDERS = _Subject(
    Order, EventKind.ORDER_CREATED, ORDER_FAMILIES, ORDER_REFERENCE_KINDS, ORDER_REFERENCE_STRENGTH, "order_id"
)
SHIPMENTS = _Subject(
    Shipment,
    EventKind.SHIPMENT_MANIFESTED,
    SHIPMENT_FAMILIES,
    SHIPMENT_REFERENCE_KINDS,
    SHIPMENT_REFERENCE_STRENGTH,
    "shipment_id",
)


def _create(subject: _Subject, events: list[CanonicalEvent], batch: _Batch) -> int:
    """``order.created`` and ``shipment.manifested`` are authoritative: they create what they name.

    Returns how many were created.
    """
    numbers: dict[str, CanonicalEvent] = {}
    for event in events:
        refs = event.references_of(subject.reference_kinds)
        if event.kind == subject.created_by and refs and subject.resolve(event, batch) is None:
            numbers.setdefault(_number(refs, subject.strength), event)
    if not numbers:
        return 0
    manager = subject.model.objects
    existing = set(manager.filter(number__any=numbers).values_list("number", flat=True))
    insert_new(subject.model, [subject.model(number=n) for n in numbers if n not in existing])
    rows = []
    for number, subject_id in manager.filter(number__any=numbers).values_list("number", "id"):
        rows += [subject.reference(ref, subject_id) for ref in numbers[number].references_of(subject.reference_kinds)]
    _insert_references(rows, batch)
    return len(set(numbers) - existing)


def _attach_references(events: list[CanonicalEvent], batch: _Batch) -> None:
    """New references an event brings join the order or shipment it resolved to."""
    rows = []
    for event in events:
        subject = next((s for s in (ORDERS, SHIPMENTS) if event.kind.family in s.families), None)
        subject_id = subject.resolve(event, batch) if subject else None
        if subject_id:
            rows += [
                subject.reference(ref, subject_id)
                for ref in event.references_of(subject.reference_kinds)
                if not any(getattr(target, subject.field) == subject_id for target in batch.targets(ref))
            ]
    _insert_references(rows, batch)


def _insert_references(rows: list[Reference], batch: _Batch) -> None:
    if not rows:
        return
    insert_new(Reference, rows)
    _load_references({(row.kind, row.value) for row in rows}, batch, refresh=True)


def _milestone(event: CanonicalEvent, batch: _Batch, *, order_id: int | None, shipment_id: int | None) -> Milestone:
    source = event.source
    partner = batch.partners.get(source.partner or "")
    channel = batch.channels.get((source.partner or "", source.channel or ""))
    # The lines are in their own column; a 5,000-line snapshot is not stored twice.
    payload = event.model_dump(mode="json", exclude_none=True, exclude={"lines": True, "source": {"scopes"}})
    return Milestone(
        event_id=event.event_id,
        kind=event.kind.value,
        occurred_at=event.occurred_at,
        order_id=order_id,
        shipment_id=shipment_id,
        source_partner=partner,
        source_channel=channel,
        source_message_id=source.message,
        references=payload["references"],
        lines=[line.model_dump(mode="json", exclude_none=True) for line in event.lines],
        location=payload.get("location"),
        amount=event.amount,
        currency=event.currency or "",
        estimated_delivery_at=event.estimated_delivery_at,
        payload=payload,
    )


MilestoneKey = tuple[int | None, int | None, str, datetime]


def _key(milestone: "Milestone | _Known") -> MilestoneKey:
    return (milestone.order_id, milestone.shipment_id, milestone.kind, milestone.occurred_at)


def _record(candidates: list[Milestone], batch: _Batch) -> list[Milestone]:
    """Append milestones; the same milestone from several sources is recorded once, with reports.

    Of the events saying the same thing, the smallest event id (then source) is the milestone and the others
    are its reports, whatever the order they arrived in. Returns the milestones new to the
    timeline (a smaller event id taking over a known milestone is not news); notes in ``batch``
    the orders whose ``order.created`` milestones changed, the only ones whose header to re-read.
    """
    subjects = [m for m in candidates if m.order_id or m.shipment_id]
    existing = _existing_milestones(subjects)
    groups: dict[MilestoneKey, list[Milestone]] = defaultdict(list)
    for milestone in subjects:
        groups[_key(milestone)].append(milestone)
    inserts = [m for m in candidates if not (m.order_id or m.shipment_id)]
    reports: list[tuple[Identity, Milestone | _Known]] = []
    displaced: list[tuple[_Known, Identity]] = []
    for key, group in groups.items():
        group.sort(key=identity)
        current = existing.get(key)
        if current is not None and identity(current) < identity(group[0]):
            reports += [(identity(current), m) for m in group]
            continue
        inserts.append(group[0])
        reports += [(identity(group[0]), m) for m in group[1:]]
        if current is not None:
            displaced.append((current, identity(group[0])))
            reports.append((identity(group[0]), current))
    insert_new(Milestone, inserts)
    batch.created_order_ids |= {m.order_id for m in inserts if m.kind == EventKind.ORDER_CREATED and m.order_id}
    displacing = {primary for _, primary in displaced}
    news = [m for m in inserts if identity(m) not in displacing]
    if not reports:
        return news
    ids = pks_by_identity(Milestone, (primary.event_id for primary, _ in reports))
    for old, primary in displaced:
        MilestoneReport.objects.filter(milestone_id=old.id).update(milestone_id=ids[primary])
    Milestone.objects.filter(pk__any=[old.id for old, _ in displaced]).delete()
    insert_new(
        MilestoneReport,
        [
            MilestoneReport(
                milestone_id=ids[primary],
                event_id=m.event_id,
                source_partner_id=m.source_partner_id,
                source_channel_id=m.source_channel_id,
                source_message_id=m.source_message_id,
            )
            for primary, m in reports
        ],
    )
    return news


class _Known(NamedTuple):
    """A milestone already on the timeline, as much of it as ``_record`` needs."""

    id: int
    event_id: str
    order_id: int | None
    shipment_id: int | None
    kind: str
    occurred_at: datetime
    source_partner_id: int | None
    source_channel_id: int | None
    source_message_id: int | None


def _existing_milestones(subjects: list[Milestone]) -> dict[MilestoneKey, _Known]:
    """The touched subjects' milestones of the same kinds, read as tuples: a handful per subject,
    and no list of every event's time sent to the database."""
    if not subjects:
        return {}
    rows = Milestone.objects.filter(
        Q(order_id__any={m.order_id for m in subjects if m.order_id})
        | Q(shipment_id__any={m.shipment_id for m in subjects if m.shipment_id}),
        kind__in={m.kind for m in subjects},
    ).values_list(*_Known._fields)
    wanted = {_key(m) for m in subjects}
    known = (_Known(*row) for row in rows)
    return {_key(row): row for row in known if _key(row) in wanted}


# --- shipment to order links ------------------------------------------------------------------


def _collect_claims(event: CanonicalEvent, shipment_id: int, batch: _Batch, links: set, claims: set) -> None:
    """Each order reference on a shipment event links the shipment to the orders carrying it
    (consolidation), now and, through the claim, to orders that carry it later."""
    for ref in event.references_of(ORDER_REFERENCE_KINDS):
        claims.add((shipment_id, ref.kind.value, ref.value))
        links |= {(shipment_id, target.order_id) for target in batch.targets(ref) if target.order_id}


def _save_links(links: set, claims: set, result: ApplyResult) -> None:
    through = Shipment.orders.through
    if links:
        insert_new(through, [through(shipment_id=s, order_id=o) for s, o in links])
        result.order_ids |= {o for _, o in links}
        result.shipment_ids |= {s for s, _ in links}
    if claims:
        insert_new(ShipmentOrderClaim, [ShipmentOrderClaim(shipment_id=s, kind=k, value=v) for s, k, v in claims])


def _link_claimed_orders(gained: set[RefKey], result: ApplyResult) -> None:
    """Link shipments to orders that just gained a reference a shipment event had named."""
    if not gained:
        return
    values = {value for _, value in gained}
    claims = [row for row in ShipmentOrderClaim.objects.filter(value__any=values) if (row.kind, row.value) in gained]
    if not claims:
        return
    orders_by_key: dict[RefKey, set[int]] = {}
    for kind, value, order_id in Reference.objects.filter(
        value__any={row.value for row in claims}, order__isnull=False
    ).values_list("kind", "value", "order_id"):
        orders_by_key.setdefault((kind, value), set()).add(order_id)
    links = {(row.shipment_id, order_id) for row in claims for order_id in orders_by_key.get((row.kind, row.value), ())}
    _save_links(links, set(), result)


# --- parking ----------------------------------------------------------------------------------


def _park(events: list[CanonicalEvent], batch: _Batch, result: ApplyResult) -> None:
    """Park events that match nothing yet, or whose subject is not known yet."""
    if not events:
        return
    by_key = {event.key: event for event in events}
    if connection.vendor == "postgresql":
        _store_parked(list(by_key.values()), batch)
    else:
        _store_parked_portably(list(by_key.values()), batch)
    batch.parked_keys |= set(chain.from_iterable(_keys(event.references) for event in events))
    result.parked.extend(by_key)


def _store_parked(events: list[CanonicalEvent], batch: _Batch) -> None:
    """The events and their references into the parking lot, one statement a chunk: the
    references are read off each stored payload by the database, no model instance is built."""
    now = timezone.now()
    rows = [
        (
            event.event_id,
            event.kind.value,
            event.occurred_at,
            batch.parked_since.get(event.key, now),
            _partner_id(event, batch),
            event.to_json(),
        )
        for event in events
    ]
    quote = connection.ops.quote_name
    parked, references = quote(ParkedEvent._meta.db_table), quote(ParkedReference._meta.db_table)
    with connection.cursor() as cursor:
        for source, params in row_sources(ParkedEvent, PARKED_COLUMNS, rows):
            # Only our own quoted table and column names are in the SQL; the rows are a parameter.
            cursor.execute(
                f"WITH parked AS (INSERT INTO {parked} ({', '.join(PARKED_COLUMNS)}) {source} "  # noqa: S608
                "ON CONFLICT DO NOTHING RETURNING id, payload) "
                f"INSERT INTO {references} (parked_event_id, kind, value) "
                "SELECT parked.id, ref ->> 'kind', ref ->> 'value' "
                "FROM parked, jsonb_array_elements(parked.payload -> 'references') AS ref ON CONFLICT DO NOTHING",
                params,
            )


def _store_parked_portably(events: list[CanonicalEvent], batch: _Batch) -> None:
    now = timezone.now()
    rows = {
        event.key: ParkedEvent(
            event_id=event.event_id,
            kind=event.kind.value,
            occurred_at=event.occurred_at,
            parked_at=batch.parked_since.get(event.key, now),
            source_partner_id=_partner_id(event, batch),
            payload=event.to_json(),
        )
        for event in events
    }
    insert_new(ParkedEvent, list(rows.values()))
    ids = pks_by_identity(ParkedEvent, (event.event_id for event in events))
    insert_new(
        ParkedReference,
        [
            ParkedReference(parked_event_id=ids[identity(rows[event.key])], kind=ref.kind.value, value=ref.value)
            for event in events
            for ref in event.references
        ],
    )


def _targets_seen(keys: set[RefKey], batch: _Batch) -> dict[RefKey, frozenset[Target]]:
    return {key: frozenset(batch.targets_of(key)) for key in keys}


def _gained_since(seen: dict[RefKey, frozenset[Target]]) -> set[RefKey]:
    """The references that point at more than they did when ``seen`` was taken: another
    transaction gave them a subject. Only those are worth a retry; the others would have an event
    waiting for a particular subject taken out and parked again, without end."""
    now = _Batch(partners={}, channels={})
    _load_references(set(seen), now)
    return {key for key, targets in seen.items() if now.targets_of(key) - targets}


def _partner_id(event: CanonicalEvent, batch: _Batch) -> int | None:
    partner = batch.partners.get(event.source.partner or "")
    return partner.pk if partner else None


def _unpark(new_keys: set[RefKey], batch: _Batch, result: ApplyResult) -> list[CanonicalEvent]:
    """Take out of the parking lot every event that carries one of the references just created."""
    if not new_keys:
        return []
    candidates = ParkedReference.objects.filter(value__each={value for _, value in new_keys}).values_list(
        "kind", "value", "parked_event_id"
    )
    parked_ids = {parked_id for kind, value, parked_id in candidates if (kind, value) in new_keys}
    if not parked_ids:
        return []
    events, parked_since = _take_parked(parked_ids)
    batch.parked_since.update(parked_since)
    parked_now = {event.key for event in events}
    result.parked = [key for key in result.parked if key not in parked_now]
    result.unparked.extend(sorted(parked_now))
    fresh = _load_batch(events)
    batch.partners.update(fresh.partners)
    batch.channels.update(fresh.channels)
    return events


def _take_parked(ids: Collection[int]) -> tuple[list[CanonicalEvent], dict[EventKey, datetime]]:
    """The parked events of these primary keys, taken out of the parking lot, and the time each
    was parked, by event key.

    Plain ``DELETE``s (the ORM's cascade would first read every row back, payload included); on
    PostgreSQL the second returns the payloads as JSON text, decoded and validated in one pass.
    """
    delete_rows(ParkedReference.objects.filter(parked_event_id__any=ids))
    if connection.vendor != "postgresql":
        rows = list(ParkedEvent.objects.filter(pk__any=ids).values_list("payload", "parked_at"))
        delete_rows(ParkedEvent.objects.filter(pk__any=ids))
        taken = [(load_stored_event(payload), at) for payload, at in rows]
    else:
        table = connection.ops.quote_name(ParkedEvent._meta.db_table)
        with connection.cursor() as cursor:
            # The table's quoted name only: the ids are a parameter.
            cursor.execute(f"DELETE FROM {table} WHERE id = ANY(%s) RETURNING payload::text, parked_at", [list(ids)])  # noqa: S608
            taken = [(load_stored_event_json(text), at) for text, at in cursor.fetchall()]
    return [event for event, _ in taken], {event.key: at for event, at in taken}

"""Applying canonical events to the timeline: correlate, append, park, project.

``apply_events`` is the only writer of orders, shipments, references and milestones. It is
idempotent (a milestone per ``event_id``) and order-independent: projections are recomputed from
the whole set of milestones of every order and shipment a batch touched, so any arrival order or
duplication of the same events converges on the same state.
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import chain

from django.db import transaction

from apps.partners.models import Channel, Partner
from apps.timeline import projections
from apps.timeline.events import (
    ORDER_REFERENCE_KINDS,
    ORDER_REFERENCE_STRENGTH,
    SHIPMENT_REFERENCE_KINDS,
    SHIPMENT_REFERENCE_STRENGTH,
    CanonicalEvent,
    EventKind,
    EventReference,
    load_stored_event,
)
from apps.timeline.models import (
    Milestone,
    Order,
    ParkedEvent,
    ParkedReference,
    PendingOrderLink,
    Reference,
    Shipment,
)

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

# Families whose order-level references all name the one order the event is about.
ORDER_FAMILIES = frozenset({"order", "invoice", "return"})
# Families whose shipment-level references all name the one shipment the event is about.
SHIPMENT_FAMILIES = frozenset({"shipment", "freight"})


@dataclass
class ApplyResult:
    """What one ``apply_events`` call did, by event id, and which subjects it touched."""

    applied: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    parked: list[str] = field(default_factory=list)
    unparked: list[str] = field(default_factory=list)
    rejected: dict[str, str] = field(default_factory=dict)
    order_ids: set[int] = field(default_factory=set)
    shipment_ids: set[int] = field(default_factory=set)
    created_orders: int = 0
    created_shipments: int = 0


@dataclass
class _Batch:
    """Lookups shared by the rounds of one apply: partners, channels and resolved references."""

    partners: dict[str, Partner]
    channels: dict[tuple[str, str], Channel]
    references: dict[RefKey, Reference] = field(default_factory=dict)


def apply_events(events: Iterable[CanonicalEvent]) -> ApplyResult:
    """Apply a batch of canonical events in one transaction and return what it touched.

    Duplicates (already applied or already parked, or repeated in the batch) change nothing.
    Events whose references match nothing yet are parked and applied automatically, in the same
    call, as soon as a reference they carry appears.
    """
    result = ApplyResult()
    with transaction.atomic():
        pending = _without_duplicates(list(events), result)
        batch = _load_batch(pending)
        while pending:
            new_keys = _apply_round(pending, batch, result)
            pending = _unpark(new_keys, batch, result)
        result.order_ids |= projections.orders_of_shipments(result.shipment_ids)
        projections.recompute(order_ids=result.order_ids, shipment_ids=result.shipment_ids)
        result.unparked = [event_id for event_id in result.unparked if event_id not in set(result.parked)]
        if result.order_ids:
            ids = sorted(result.order_ids)
            transaction.on_commit(lambda: _broadcast(ids))
    return result


def retry_parked_events(*, limit: int = 5000) -> ApplyResult:
    """Re-apply parked events; catches a reference that appeared while the event was being parked."""
    parked = list(ParkedEvent.objects.order_by("parked_at")[:limit])
    if not parked:
        return ApplyResult()
    events = [load_stored_event(row.payload) for row in parked]
    with transaction.atomic():
        ParkedEvent.objects.filter(pk__in=[row.pk for row in parked]).delete()
        return apply_events(events)


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


def queue_for(kind: EventKind) -> str:
    if kind in CRITICAL_KINDS or kind.family in ("invoice", "freight"):
        return "critical"
    if kind in BULK_KINDS:
        return "bulk"
    return "default"


def _broadcast(order_ids: list[int]) -> None:
    from apps.timeline.realtime import broadcast_orders_changed

    broadcast_orders_changed(order_ids)


# --- dedupe and lookups -----------------------------------------------------------------------


def _without_duplicates(events: list[CanonicalEvent], result: ApplyResult) -> list[CanonicalEvent]:
    unique: dict[str, CanonicalEvent] = {}
    for event in events:
        if event.event_id in unique:
            result.duplicates.append(event.event_id)
        else:
            unique[event.event_id] = event
    ids = list(unique)
    known = set(Milestone.objects.filter(event_id__in=ids).values_list("event_id", flat=True))
    known |= set(ParkedEvent.objects.filter(event_id__in=ids).values_list("event_id", flat=True))
    result.duplicates.extend(event_id for event_id in ids if event_id in known)
    return [event for event_id, event in unique.items() if event_id not in known]


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


def _load_references(keys: set[RefKey], batch: _Batch) -> None:
    missing = {key for key in keys if key not in batch.references}
    if not missing:
        return
    rows = Reference.objects.filter(value__in={value for _, value in missing})
    for row in rows:
        batch.references[(row.kind, row.value)] = row


def _keys(refs: Iterable[EventReference]) -> set[RefKey]:
    return {(ref.kind.value, ref.value) for ref in refs}


def _strongest(refs: Iterable[EventReference], strength: Sequence, batch: _Batch, attr: str) -> int | None:
    """The subject id of the strongest resolved reference, by kind strength then value."""
    resolved = []
    for ref in refs:
        row = batch.references.get((ref.kind.value, ref.value))
        subject_id = getattr(row, attr) if row else None
        if subject_id is not None:
            resolved.append((strength.index(ref.kind), ref.value, subject_id))
    return min(resolved)[2] if resolved else None


# --- one round: create what is authoritative, resolve, append, park ----------------------------


def _apply_round(events: list[CanonicalEvent], batch: _Batch, result: ApplyResult) -> set[RefKey]:
    """Apply ``events``; return the reference keys this round created (they may unpark events)."""
    all_keys = set(chain.from_iterable(_keys(event.references) for event in events))
    _load_references(all_keys, batch)
    known_before = set(batch.references)

    _create_orders(events, batch, result)
    _create_shipments(events, batch, result)
    _attach_references(events, batch)

    milestones, parked, links, pending_links = [], [], set(), set()
    for event in events:
        if event.kind.family == "inventory":
            rejection = projections.inventory_rejection(event, batch.partners)
            if rejection:
                result.rejected[event.event_id] = rejection
            else:
                milestones.append(_milestone(event, batch, order_id=None, shipment_id=None))
            continue
        order_id, shipment_id = _subject(event, batch)
        if order_id is None and shipment_id is None:
            parked.append(event)
            continue
        milestones.append(_milestone(event, batch, order_id=order_id, shipment_id=shipment_id))
        if order_id:
            result.order_ids.add(order_id)
        if shipment_id:
            result.shipment_ids.add(shipment_id)
            if event.kind.family == "shipment":
                _collect_links(event, shipment_id, batch, links, pending_links)

    Milestone.objects.bulk_create(milestones, ignore_conflicts=True)
    result.applied.extend(m.event_id for m in milestones)
    projections.apply_inventory([e for e in events if e.kind.family == "inventory"], batch.partners, result)
    _park(parked, batch, result)
    _save_links(links, pending_links, result)
    new_keys = set(batch.references) - known_before
    _resolve_pending_links(new_keys, result)
    return new_keys


def _subject(event: CanonicalEvent, batch: _Batch) -> tuple[int | None, int | None]:
    """The (order id, shipment id) a milestone hangs on; (None, None) parks the event.

    A shipment or freight event that names a shipment we do not know yet is parked even when its
    order is known: attaching it to the order now and to the shipment later would make the
    timeline depend on arrival order.
    """
    family = event.kind.family
    if family in SHIPMENT_FAMILIES:
        shipment_refs = event.references_of(SHIPMENT_REFERENCE_KINDS)
        if shipment_refs:
            return None, _strongest(shipment_refs, SHIPMENT_REFERENCE_STRENGTH, batch, "shipment_id")
        if family == "freight":
            return None, None
    order_refs = event.references_of(ORDER_REFERENCE_KINDS)
    return _strongest(order_refs, ORDER_REFERENCE_STRENGTH, batch, "order_id"), None


def _create_orders(events: list[CanonicalEvent], batch: _Batch, result: ApplyResult) -> None:
    """``order.created`` is authoritative: it creates the order its references name."""
    numbers: dict[str, CanonicalEvent] = {}
    for event in events:
        if event.kind != EventKind.ORDER_CREATED:
            continue
        refs = event.references_of(ORDER_REFERENCE_KINDS)
        if not refs or _strongest(refs, ORDER_REFERENCE_STRENGTH, batch, "order_id"):
            continue
        number = min((ORDER_REFERENCE_STRENGTH.index(r.kind), r.value) for r in refs)[1]
        numbers.setdefault(number, event)
    if not numbers:
        return
    existing = set(Order.objects.filter(number__in=numbers).values_list("number", flat=True))
    Order.objects.bulk_create(
        [Order(number=number) for number in numbers if number not in existing], ignore_conflicts=True
    )
    created = Order.objects.filter(number__in=numbers).values_list("number", "id")
    rows = []
    for number, order_id in created:
        result.created_orders += number not in existing
        for ref in numbers[number].references_of(ORDER_REFERENCE_KINDS):
            rows.append(Reference(kind=ref.kind.value, value=ref.value, order_id=order_id))
    _insert_references(rows, batch)


def _create_shipments(events: list[CanonicalEvent], batch: _Batch, result: ApplyResult) -> None:
    """``shipment.manifested`` is authoritative: it creates the shipment its references name."""
    numbers: dict[str, CanonicalEvent] = {}
    for event in events:
        if event.kind != EventKind.SHIPMENT_MANIFESTED:
            continue
        refs = event.references_of(SHIPMENT_REFERENCE_KINDS)
        if not refs or _strongest(refs, SHIPMENT_REFERENCE_STRENGTH, batch, "shipment_id"):
            continue
        number = min((SHIPMENT_REFERENCE_STRENGTH.index(r.kind), r.value) for r in refs)[1]
        numbers.setdefault(number, event)
    if not numbers:
        return
    existing = set(Shipment.objects.filter(number__in=numbers).values_list("number", flat=True))
    Shipment.objects.bulk_create(
        [Shipment(number=number) for number in numbers if number not in existing], ignore_conflicts=True
    )
    rows = []
    for number, shipment_id in Shipment.objects.filter(number__in=numbers).values_list("number", "id"):
        result.created_shipments += number not in existing
        for ref in numbers[number].references_of(SHIPMENT_REFERENCE_KINDS):
            rows.append(Reference(kind=ref.kind.value, value=ref.value, shipment_id=shipment_id))
    _insert_references(rows, batch)


def _attach_references(events: list[CanonicalEvent], batch: _Batch) -> None:
    """New references an event brings join the order or shipment it resolved to."""
    rows = []
    for event in events:
        family = event.kind.family
        if family in ORDER_FAMILIES:
            refs = event.references_of(ORDER_REFERENCE_KINDS)
            order_id = _strongest(refs, ORDER_REFERENCE_STRENGTH, batch, "order_id")
            if order_id:
                rows += [
                    Reference(kind=r.kind.value, value=r.value, order_id=order_id)
                    for r in refs
                    if (r.kind.value, r.value) not in batch.references
                ]
        elif family in SHIPMENT_FAMILIES:
            refs = event.references_of(SHIPMENT_REFERENCE_KINDS)
            shipment_id = _strongest(refs, SHIPMENT_REFERENCE_STRENGTH, batch, "shipment_id")
            if shipment_id:
                rows += [
                    Reference(kind=r.kind.value, value=r.value, shipment_id=shipment_id)
                    for r in refs
                    if (r.kind.value, r.value) not in batch.references
                ]
    _insert_references(rows, batch)


def _insert_references(rows: list[Reference], batch: _Batch) -> None:
    """Insert references; on a clash (same kind and value) the first writer keeps it."""
    if not rows:
        return
    Reference.objects.bulk_create(rows, ignore_conflicts=True)
    for row in Reference.objects.filter(value__in={row.value for row in rows}):
        batch.references[(row.kind, row.value)] = row


def _milestone(event: CanonicalEvent, batch: _Batch, *, order_id: int | None, shipment_id: int | None) -> Milestone:
    source = event.source
    partner = batch.partners.get(source.partner or "")
    channel = batch.channels.get((source.partner or "", source.channel or ""))
    return Milestone(
        event_id=event.event_id,
        kind=event.kind.value,
        occurred_at=event.occurred_at,
        order_id=order_id,
        shipment_id=shipment_id,
        source_partner=partner,
        source_channel=channel,
        source_message_id=source.message,
        references=[ref.model_dump(mode="json") for ref in event.references],
        lines=[line.model_dump(mode="json", exclude_none=True) for line in event.lines],
        location=event.location.model_dump(mode="json", exclude_none=True) if event.location else None,
        amount=event.amount,
        currency=event.currency or "",
        estimated_delivery_at=event.estimated_delivery_at,
        payload=event.to_json(),
    )


# --- shipment to order links ------------------------------------------------------------------


def _collect_links(event: CanonicalEvent, shipment_id: int, batch: _Batch, links: set, pending: set) -> None:
    """Each order reference on a shipment event links that shipment to an order (consolidation)."""
    for ref in event.references_of(ORDER_REFERENCE_KINDS):
        row = batch.references.get((ref.kind.value, ref.value))
        if row and row.order_id:
            links.add((shipment_id, row.order_id))
        elif not row:
            pending.add((shipment_id, ref.kind.value, ref.value))


def _save_links(links: set, pending: set, result: ApplyResult) -> None:
    through = Shipment.orders.through
    if links:
        through.objects.bulk_create([through(shipment_id=s, order_id=o) for s, o in links], ignore_conflicts=True)
        result.order_ids |= {o for _, o in links}
    if pending:
        PendingOrderLink.objects.bulk_create(
            [PendingOrderLink(shipment_id=s, kind=k, value=v) for s, k, v in pending], ignore_conflicts=True
        )


def _resolve_pending_links(new_keys: set[RefKey], result: ApplyResult) -> None:
    """Link shipments that named an order before it existed, now that its reference exists."""
    if not new_keys:
        return
    values = {value for _, value in new_keys}
    waiting = [row for row in PendingOrderLink.objects.filter(value__in=values) if (row.kind, row.value) in new_keys]
    if not waiting:
        return
    order_by_key = {
        (ref.kind, ref.value): ref.order_id
        for ref in Reference.objects.filter(value__in={row.value for row in waiting}, order__isnull=False)
    }
    links = {
        (row.shipment_id, order_by_key[(row.kind, row.value)])
        for row in waiting
        if (row.kind, row.value) in order_by_key
    }
    _save_links(links, set(), result)
    result.shipment_ids |= {s for s, _ in links}
    PendingOrderLink.objects.filter(pk__in=[row.pk for row in waiting]).delete()


# --- parking ----------------------------------------------------------------------------------


def _park(events: list[CanonicalEvent], batch: _Batch, result: ApplyResult) -> None:
    if not events:
        return
    ParkedEvent.objects.bulk_create(
        [
            ParkedEvent(
                event_id=event.event_id,
                kind=event.kind.value,
                occurred_at=event.occurred_at,
                source_partner=batch.partners.get(event.source.partner or ""),
                payload=event.to_json(),
            )
            for event in events
        ],
        ignore_conflicts=True,
    )
    by_id = {event.event_id: event for event in events}
    ids = dict(ParkedEvent.objects.filter(event_id__in=by_id).values_list("event_id", "pk"))
    ParkedReference.objects.bulk_create(
        [
            ParkedReference(parked_event_id=ids[event_id], kind=ref.kind.value, value=ref.value)
            for event_id, event in by_id.items()
            for ref in event.references
        ],
        ignore_conflicts=True,
    )
    result.parked.extend(by_id)


def _unpark(new_keys: set[RefKey], batch: _Batch, result: ApplyResult) -> list[CanonicalEvent]:
    """Take out of the parking lot every event that carries one of the references just created."""
    if not new_keys:
        return []
    candidates = ParkedReference.objects.filter(value__in={value for _, value in new_keys})
    parked_ids = {row.parked_event_id for row in candidates if (row.kind, row.value) in new_keys}
    if not parked_ids:
        return []
    rows = list(ParkedEvent.objects.filter(pk__in=parked_ids))
    ParkedEvent.objects.filter(pk__in=parked_ids).delete()
    events = [load_stored_event(row.payload) for row in rows]
    parked_now = {event.event_id for event in events}
    result.parked = [event_id for event_id in result.parked if event_id not in parked_now]
    result.unparked.extend(sorted(parked_now))
    fresh = _load_batch(events)
    batch.partners.update(fresh.partners)
    batch.channels.update(fresh.channels)
    return events

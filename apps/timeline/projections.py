"""Projections: the current state of orders and shipments, computed from their milestones.

Every function here is a pure function of the *set* of milestones (ties broken by event id), so
the state never depends on the order events arrived in. A shipment's status is the furthest
milestone it reached: a late, older carrier event cannot move a delivered shipment back.
"""

import json
from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import datetime
from decimal import Decimal
from operator import attrgetter, itemgetter
from typing import Any, NamedTuple

from django.db import connections, router
from django.db.models import Max, Min, Model, Q
from django.utils import timezone

from apps.partners.models import Partner
from apps.timeline.bulk import delete_rows, insert_new, json_text
from apps.timeline.events import CanonicalEvent, EventKind
from apps.timeline.models import (
    Milestone,
    Order,
    OrderLine,
    OrderStage,
    Reference,
    Shipment,
    ShipmentLine,
    ShipmentStatus,
)

BATCH_SIZE = 500
K = EventKind

SHIPMENT_STATUS_BY_KIND = {
    K.SHIPMENT_MANIFESTED: ShipmentStatus.MANIFESTED,
    K.SHIPMENT_TRACKING_ASSIGNED: ShipmentStatus.TRACKING_ASSIGNED,
    K.SHIPMENT_PICKED_UP: ShipmentStatus.PICKED_UP,
    K.SHIPMENT_IN_TRANSIT: ShipmentStatus.IN_TRANSIT,
    K.SHIPMENT_OUT_FOR_DELIVERY: ShipmentStatus.OUT_FOR_DELIVERY,
    K.SHIPMENT_DELIVERY_ATTEMPTED: ShipmentStatus.DELIVERY_ATTEMPTED,
    K.SHIPMENT_DELIVERED: ShipmentStatus.DELIVERED,
    K.SHIPMENT_POD_RECEIVED: ShipmentStatus.POD_RECEIVED,
}
SHIPMENT_STATUS_RANK = {status: rank for rank, status in enumerate(ShipmentStatus.values)}
# First time each milestone was reached.
SHIPMENT_FIRST_FIELDS = {
    K.SHIPMENT_MANIFESTED: "manifested_at",
    K.SHIPMENT_TRACKING_ASSIGNED: "tracking_assigned_at",
    K.SHIPMENT_PICKED_UP: "picked_up_at",
    K.SHIPMENT_IN_TRANSIT: "in_transit_at",
    K.SHIPMENT_OUT_FOR_DELIVERY: "out_for_delivery_at",
    K.SHIPMENT_DELIVERED: "delivered_at",
    K.SHIPMENT_POD_RECEIVED: "pod_at",
    K.SHIPMENT_DAMAGED: "damaged_at",
    K.SHIPMENT_REFUSED: "refused_at",
}
# Last time it happened: a second attempt or a new delay is what users need to see.
SHIPMENT_LAST_FIELDS = {K.SHIPMENT_DELIVERY_ATTEMPTED: "delivery_attempted_at", K.SHIPMENT_DELAYED: "delayed_at"}
CARRIER_KINDS = frozenset(SHIPMENT_FIRST_FIELDS) - {K.SHIPMENT_MANIFESTED, K.SHIPMENT_TRACKING_ASSIGNED} | {
    K.SHIPMENT_ETA_UPDATED,
    K.SHIPMENT_DELAYED,
    K.SHIPMENT_DELIVERY_ATTEMPTED,
    K.SHIPMENT_STATUS_UNMAPPED,
}
DELAY_REASON_LENGTH = Shipment._meta.get_field("delay_reason").max_length
SHIPMENT_FIELDS = [
    "status",
    "carrier",
    "warehouse",
    "tracking_number",
    *SHIPMENT_FIRST_FIELDS.values(),
    *SHIPMENT_LAST_FIELDS.values(),
    "delay_reason",
    "estimated_delivery_at",
    "last_carrier_event_at",
]

ORDER_FIRST_FIELDS = {
    K.ORDER_CREATED: "ordered_at",
    K.ORDER_RELEASED: "released_at",
    K.ORDER_ALLOCATED: "allocated_at",
    K.ORDER_PICKED: "picked_at",
    K.ORDER_PACKED: "packed_at",
    K.ORDER_CANCELLED: "cancelled_at",
    K.INVOICE_GENERATED: "invoiced_at",
    K.INVOICE_POSTED: "posted_at",
}
# Shipment milestones that name only the order (no shipment reference) still move it on.
ORDER_SHIPPING_KINDS = (K.SHIPMENT_MANIFESTED, K.SHIPMENT_DELIVERED, K.SHIPMENT_POD_RECEIVED)
# The kinds whose first time an order's projection reads; the SQL projection names the shipping ones so.
ORDER_TIMED_KINDS = [*ORDER_FIRST_FIELDS, *ORDER_SHIPPING_KINDS]
ORDER_OWN_SHIPPING_TIMES = ("own_shipped", "own_delivered", "own_pod")
# From its latest order.created; an order without one keeps what it has.
ORDER_HEADER_FIELDS = ["customer", "region", "promised_at", "currency", "total_amount"]
ORDER_MILESTONE_FIELDS = [
    "stage",
    *ORDER_FIRST_FIELDS.values(),
    "shipped_at",
    "delivered_at",
    "pod_at",
    "last_event_at",
]
# The first reached of these, from the top, is the order's stage; a cancelled order that never
# shipped is cancelled whatever else it reached, and an order that reached none is created.
ORDER_STAGE_LADDER = [
    ("posted_at", OrderStage.POSTED),
    ("invoiced_at", OrderStage.INVOICED),
    ("delivered_at", OrderStage.DELIVERED),
    ("some_delivered", OrderStage.PARTIALLY_DELIVERED),
    ("shipped_at", OrderStage.SHIPPED),
    ("packed_at", OrderStage.PACKED),
    ("picked_at", OrderStage.PICKED),
    ("allocated_at", OrderStage.ALLOCATED),
    ("released_at", OrderStage.RELEASED),
]

Values = tuple[Any, ...]


class ShipmentMilestone(NamedTuple):
    """What a shipment's projection reads of each of its milestones."""

    shipment_id: int
    kind: str
    occurred_at: datetime
    event_id: str
    estimated_delivery_at: datetime | None
    source_partner_id: int | None
    source_partner_kind: str | None
    attributes: dict[str, Any] | None


SHIPMENT_MILESTONE_COLUMNS = [
    "shipment_id",
    "kind",
    "occurred_at",
    "event_id",
    "estimated_delivery_at",
    "source_partner_id",
    "source_partner__kind",
    "payload__attributes",
]


class ShipmentTimes(NamedTuple):
    """What an order reads of each of its shipments."""

    manifested_at: datetime | None
    delivered_at: datetime | None
    pod_at: datetime | None
    last_carrier_event_at: datetime | None


def orders_of_shipments(shipment_ids: Iterable[int]) -> set[int]:
    ids = set(shipment_ids)
    if not ids:
        return set()
    through = Shipment.orders.through
    return set(through.objects.filter(shipment_id__any=ids).values_list("order_id", flat=True))


def shipments_of_orders(order_ids: Iterable[int]) -> set[int]:
    ids = set(order_ids)
    if not ids:
        return set()
    through = Shipment.orders.through
    return set(through.objects.filter(order_id__any=ids).values_list("shipment_id", flat=True))


def recompute(
    *, order_ids: Iterable[int], shipment_ids: Iterable[int], created_order_ids: Iterable[int] | None = None
) -> None:
    """Recompute shipments first (orders read them), then orders.

    An order's header and lines come from its latest ``order.created`` alone: ``created_order_ids``
    names the orders that gained one (an apply knows), so the others keep theirs unread; None
    re-reads every order's.
    """
    shipment_ids, order_ids = set(shipment_ids), set(order_ids)
    if shipment_ids:
        _recompute_shipments(shipment_ids)
    if order_ids:
        _recompute_orders(order_ids, order_ids if created_order_ids is None else order_ids & set(created_order_ids))


# --- reading and writing projected rows -------------------------------------------------------


def _save_changed(model: type[Model], fields: list[str], rows: dict[int, Values]) -> None:
    """Write ``fields`` of the rows (by primary key) whose values differ from the stored ones.

    A batch re-projects every subject it touched and many come out as they were; leaving those
    alone, and writing the rest without model instances, is what keeps a recompute cheap.
    """
    if not rows:
        return
    if _is_postgresql(model):
        _update_changed_from_json(model, fields, rows)
    else:
        _bulk_update_changed(model, fields, rows)


def _is_postgresql(model: type[Model]) -> bool:
    return connections[router.db_for_write(model)].vendor == "postgresql"


def _update_changed_from_json(model: type[Model], fields: list[str], rows: dict[int, Values]) -> None:
    """One ``UPDATE ... FROM json_populate_recordset`` that skips rows already holding the values.

    The rows travel as one JSON parameter and PostgreSQL reads each value with its column's type,
    so neither the adaptation of each value nor the comparison with the stored row runs in Python.
    """
    connection = connections[router.db_for_write(model)]
    quote, meta = connection.ops.quote_name, model._meta
    columns = [meta.get_field(name).column for name in fields]
    table, pk = quote(meta.db_table), quote(meta.pk.column)
    records = [{meta.pk.column: key, **dict(zip(columns, values, strict=True))} for key, values in rows.items()]
    assignments = ", ".join(f"{quote(column)} = v.{quote(column)}" for column in columns)
    stored = ", ".join(f"t.{quote(column)}" for column in columns)
    projected = ", ".join(f"v.{quote(column)}" for column in columns)
    # Only the quoted names of our own table and columns are interpolated; values are parameters.
    sql = (
        f"UPDATE {table} AS t SET {assignments}, {quote('updated_at')} = %s "  # noqa: S608
        f"FROM json_populate_recordset(NULL::{table}, %s::json) AS v "
        f"WHERE t.{pk} = v.{pk} AND ROW({stored}) IS DISTINCT FROM ROW({projected})"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [timezone.now(), json_text(records)])


def _bulk_update_changed(model: type[Model], fields: list[str], rows: dict[int, Values]) -> None:
    """The portable path (SQLite, the demo database): compare in Python, then ``bulk_update``."""
    stored = {row[0]: row[1:] for row in model.objects.filter(pk__any=rows).values_list("pk", *fields)}
    now = timezone.now()
    attnames = [model._meta.get_field(name).attname for name in fields]
    changed = [
        model(pk=key, updated_at=now, **dict(zip(attnames, values, strict=True)))
        for key, values in rows.items()
        if key in stored and stored[key] != values
    ]
    model.objects.bulk_update(changed, [*fields, "updated_at"], batch_size=BATCH_SIZE)


def _partner_ids(codes: Iterable[Any]) -> dict[str, int]:
    wanted = {code for code in codes if isinstance(code, str)}
    return dict(Partner.objects.filter(code__in=wanted).values_list("code", "id")) if wanted else {}


def _replace_changed_lines(
    model: type[Model], subject: str, wanted: dict[int, list[Values]], columns: list[str]
) -> None:
    """Give each subject of ``wanted`` exactly those lines, rewriting only subjects whose lines differ.

    Stored lines are compared in id order, the order they were written in, so a subject left
    alone lists its lines as a rewrite would.
    """
    stored: dict[int, list[Values]] = defaultdict(list)
    rows = model.objects.filter(**{f"{subject}__any": wanted}).order_by("id").values_list(subject, *columns)
    for row in rows:
        stored[row[0]].append(row[1:])
    changed = [subject_id for subject_id, lines in wanted.items() if lines != stored.get(subject_id, [])]
    if not changed:
        return
    delete_rows(model.objects.filter(**{f"{subject}__any": changed}))  # lines have no dependents
    attnames = [subject, *columns]
    rows = [(subject_id, *line) for subject_id in changed for line in wanted[subject_id]]
    insert_new(model, [model(**dict(zip(attnames, row, strict=True))) for row in rows])


# --- shipments --------------------------------------------------------------------------------


def _recompute_shipments(ids: set[int]) -> None:
    if _is_postgresql(Shipment):
        _update_shipment_fields_in_sql(ids)
    else:
        _save_changed(Shipment, SHIPMENT_FIELDS, projected_shipment_fields(ids))
    _rebuild_shipment_lines(ids)


def projected_shipment_fields(ids: set[int]) -> dict[int, Values]:
    """Each shipment's ``SHIPMENT_FIELDS``, projected in Python from its milestones and references.

    The reference projection: PostgreSQL runs the same one in SQL (``_update_shipment_fields_in_sql``),
    and the tests hold the two equal.
    """
    milestones = _shipment_milestones(ids)
    partners = _partner_ids(
        (row.attributes or {}).get(name)
        for rows in milestones.values()
        for row in rows
        for name in ("carrier", "warehouse")
    )
    tracking = _tracking_numbers(ids)
    return {
        shipment_id: _project_shipment(milestones.get(shipment_id, []), partners, tracking.get(shipment_id, ""))
        for shipment_id in ids
    }


def _shipment_milestones(ids: set[int]) -> dict[int, list[ShipmentMilestone]]:
    """Each shipment's milestones, sorted by (occurred_at, event_id)."""
    rows = Milestone.objects.filter(shipment_id__any=ids).order_by().values_list(*SHIPMENT_MILESTONE_COLUMNS)
    by_shipment: dict[int, list[ShipmentMilestone]] = defaultdict(list)
    for row in sorted(map(ShipmentMilestone._make, rows), key=attrgetter("occurred_at", "event_id")):
        by_shipment[row.shipment_id].append(row)
    return by_shipment


def _project_shipment(rows: list[ShipmentMilestone], partners: dict[str, int], tracking_number: str) -> Values:
    """The shipment's ``SHIPMENT_FIELDS`` from its sorted milestones."""
    state: dict[str, Any] = dict.fromkeys(SHIPMENT_FIELDS)
    state.update(status=ShipmentStatus.MANIFESTED, delay_reason="", tracking_number=tracking_number)
    for _shipment_id, kind, at, _event_id, estimated, source_id, source_kind, attributes in rows:
        attributes = attributes or {}
        first = SHIPMENT_FIRST_FIELDS.get(kind)
        if first and state[first] is None:
            state[first] = at
        if kind in SHIPMENT_LAST_FIELDS:
            state[SHIPMENT_LAST_FIELDS[kind]] = at
        status = SHIPMENT_STATUS_BY_KIND.get(kind)
        if status and SHIPMENT_STATUS_RANK[status] > SHIPMENT_STATUS_RANK[state["status"]]:
            state["status"] = status
        if kind == K.SHIPMENT_DELAYED:
            state["delay_reason"] = _delay_reason(attributes.get("reason"))
        if estimated:
            state["estimated_delivery_at"] = estimated
        if kind in CARRIER_KINDS:
            state["last_carrier_event_at"] = at
        if state["carrier"] is None:
            state["carrier"] = _named_partner(partners, attributes.get("carrier")) or (
                source_id if source_kind == Partner.Kind.CARRIER else None
            )
        if state["warehouse"] is None and kind == K.SHIPMENT_MANIFESTED:
            state["warehouse"] = _named_partner(partners, attributes.get("warehouse")) or (
                source_id if source_kind == Partner.Kind.WAREHOUSE else None
            )
    if state["delivered_at"] is None and state["status"] in (ShipmentStatus.DELIVERED, ShipmentStatus.POD_RECEIVED):
        state["delivered_at"] = state["pod_at"]
    return tuple(state[name] for name in SHIPMENT_FIELDS)


def _delay_reason(reason: Any) -> str:
    """A delay's reason as text; a list or an object is shown as its JSON, as PostgreSQL prints it."""
    if reason and isinstance(reason, list | dict):
        return json.dumps(reason, ensure_ascii=False)[:DELAY_REASON_LENGTH]
    return str(reason or "")[:DELAY_REASON_LENGTH]


def _named_partner(partners: dict[str, int], code: Any) -> int | None:
    """The partner an attribute names by its code; any other value names none."""
    return partners.get(code) if isinstance(code, str) else None


def _tracking_numbers(ids: set[int]) -> dict[int, str]:
    """The shipment's tracking number: the smallest of its tracking references, for determinism."""
    numbers: dict[int, str] = {}
    refs = Reference.objects.filter(shipment_id__any=ids, kind="tracking").order_by("value")
    for shipment_id, value in refs.values_list("shipment_id", "value"):
        numbers.setdefault(shipment_id, value)
    return numbers


def _update_shipment_fields_in_sql(ids: set[int]) -> None:
    """``projected_shipment_fields`` as one PostgreSQL statement that writes only the shipments it changes.

    The milestones are folded where they are stored, so neither their attributes nor any projected
    value travels to Python.
    """
    connection = connections[router.db_for_write(Shipment)]
    params = {
        "ids": list(ids),
        "now": timezone.now(),
        "statuses": list(ShipmentStatus.values),
        "lowest_rank": SHIPMENT_STATUS_RANK[ShipmentStatus.MANIFESTED],
        "delivered": [ShipmentStatus.DELIVERED.value, ShipmentStatus.POD_RECEIVED.value],
        "carrier_kinds": sorted(kind.value for kind in CARRIER_KINDS),
        "manifested": K.SHIPMENT_MANIFESTED.value,
        "delayed": K.SHIPMENT_DELAYED.value,
        "carrier": Partner.Kind.CARRIER.value,
        "warehouse": Partner.Kind.WAREHOUSE.value,
        "tracking": "tracking",
        "reason_length": DELAY_REASON_LENGTH,
        **{f"first_{index}": kind.value for index, kind in enumerate(SHIPMENT_FIRST_FIELDS)},
        **{f"last_{index}": kind.value for index, kind in enumerate(SHIPMENT_LAST_FIELDS)},
        **{f"status_{index}": kind.value for index, kind in enumerate(SHIPMENT_STATUS_BY_KIND)},
    }
    with connection.cursor() as cursor:
        cursor.execute(_shipment_fields_sql(connection.ops.quote_name), params)


def _shipment_fields_sql(quote: Callable[[str], str]) -> str:
    """The statement of ``_update_shipment_fields_in_sql``, step for step ``_project_shipment``.

    Milestones are taken in (occurred_at, event_id) order, event ids compared by code point as
    Python compares them. A reason is printed as ``_delay_reason`` prints it: text as is, true as
    ``True``, a number as Python prints its float or int (the smallest fractions in exponent form).
    One difference is left: inside a list or an object, such a small fraction keeps PostgreSQL's
    plain notation.
    """
    firsts = ", ".join(
        f"min(occurred_at) FILTER (WHERE kind = %(first_{index})s) AS {name}"
        for index, name in enumerate(SHIPMENT_FIRST_FIELDS.values())
    )
    lasts = ", ".join(
        f"max(occurred_at) FILTER (WHERE kind = %(last_{index})s) AS {name}"
        for index, name in enumerate(SHIPMENT_LAST_FIELDS.values())
    )
    ranks = " ".join(
        f"WHEN %(status_{index})s THEN {SHIPMENT_STATUS_RANK[status]}"
        for index, status in enumerate(SHIPMENT_STATUS_BY_KIND.values())
    )
    in_order = 'ORDER BY occurred_at, event_id COLLATE "C"'
    latest_first = 'ORDER BY occurred_at DESC, event_id COLLATE "C" DESC'
    # Delivered without a delivery milestone (a POD alone): delivered when the POD came.
    delivered = "CASE WHEN status = ANY(%(delivered)s) THEN coalesce(delivered_at, pod_at) ELSE delivered_at END"
    values = {name: name for name in SHIPMENT_FIELDS} | {
        "delay_reason": "coalesce(delay_reason, '')",
        "delivered_at": delivered,
    }
    reason = "m.payload -> 'attributes' -> 'reason'"
    columns = [quote(Shipment._meta.get_field(name).column) for name in SHIPMENT_FIELDS]
    assignments = ", ".join(f"{column} = v.{name}" for column, name in zip(columns, SHIPMENT_FIELDS, strict=True))
    stored = ", ".join(f"t.{column}" for column in columns)
    projected = ", ".join(f"v.{name}" for name in SHIPMENT_FIELDS)
    milestones, partners, references = (quote(m._meta.db_table) for m in (Milestone, Partner, Reference))
    # Only the quoted names of our own tables and columns are interpolated; values are parameters.
    return f"""
        WITH facts AS (
            SELECT m.shipment_id, m.kind, m.occurred_at, m.event_id,
                m.estimated_delivery_at, CASE m.kind {ranks} END AS status_rank,
                CASE WHEN m.kind = %(delayed)s THEN left(CASE
                    WHEN {reason} IS NULL OR {reason} IN ('null', 'false', '""', '[]', '{{}}') THEN ''
                    WHEN jsonb_typeof({reason}) = 'string' THEN {reason} #>> '{{}}'
                    WHEN jsonb_typeof({reason}) = 'boolean' THEN 'True'
                    WHEN jsonb_typeof({reason}) <> 'number' THEN ({reason})::text
                    WHEN ({reason})::numeric = 0 THEN ''
                    WHEN abs(({reason})::numeric) < 0.0001 THEN ({reason})::numeric::float8::text
                    ELSE {reason} #>> '{{}}' END, %(reason_length)s) END AS delay_reason,
                coalesce(named_carrier.id, CASE WHEN source.kind = %(carrier)s THEN source.id END) AS carrier,
                CASE WHEN m.kind = %(manifested)s THEN coalesce(
                    named_warehouse.id, CASE WHEN source.kind = %(warehouse)s THEN source.id END
                ) END AS warehouse
            FROM {milestones} AS m
            LEFT JOIN {partners} AS source ON source.id = m.source_partner_id
            LEFT JOIN {partners} AS named_carrier ON named_carrier.code = m.payload -> 'attributes' ->> 'carrier'
                AND jsonb_typeof(m.payload -> 'attributes' -> 'carrier') = 'string'
            LEFT JOIN {partners} AS named_warehouse
                ON named_warehouse.code = m.payload -> 'attributes' ->> 'warehouse'
                AND jsonb_typeof(m.payload -> 'attributes' -> 'warehouse') = 'string' AND m.kind = %(manifested)s
            WHERE m.shipment_id = ANY(%(ids)s)
        ), folded AS (
            SELECT shipment_id, {firsts}, {lasts}, max(status_rank) AS status_rank,
                (array_agg(delay_reason {latest_first}) FILTER (WHERE kind = %(delayed)s))[1] AS delay_reason,
                (array_agg(estimated_delivery_at {latest_first})
                    FILTER (WHERE estimated_delivery_at IS NOT NULL))[1] AS estimated_delivery_at,
                max(occurred_at) FILTER (WHERE kind = ANY(%(carrier_kinds)s)) AS last_carrier_event_at,
                (array_agg(carrier {in_order}) FILTER (WHERE carrier IS NOT NULL))[1] AS carrier,
                (array_agg(warehouse {in_order}) FILTER (WHERE warehouse IS NOT NULL))[1] AS warehouse
            FROM facts GROUP BY shipment_id
        ), tracking AS (
            SELECT shipment_id, min(value) AS tracking_number FROM {references}
            WHERE shipment_id = ANY(%(ids)s) AND kind = %(tracking)s GROUP BY shipment_id
        ), ranked AS (
            SELECT s.id, f.*, (%(statuses)s::text[])[greatest(f.status_rank, %(lowest_rank)s) + 1] AS status,
                coalesce(t.tracking_number, '') AS tracking_number
            FROM unnest(%(ids)s::bigint[]) AS s (id)
            LEFT JOIN folded AS f ON f.shipment_id = s.id LEFT JOIN tracking AS t ON t.shipment_id = s.id
        ), v AS (
            SELECT id, {", ".join(f"{expression} AS {name}" for name, expression in values.items())} FROM ranked
        )
        UPDATE {quote(Shipment._meta.db_table)} AS t SET {assignments}, {quote("updated_at")} = %(now)s
        FROM v WHERE t.id = v.id AND ROW({stored}) IS DISTINCT FROM ROW({projected})
    """  # noqa: S608


def _rebuild_shipment_lines(ids: set[int]) -> None:
    """Lines come from the latest manifest that lists any: a corrected ASN replaces the first."""
    manifests = _latest_manifest_lines(ids)
    orders_by_shipment = _linked_orders(set(manifests))
    orders_by_ref = _orders_by_reference({line.get("order") for lines in manifests.values() for line in lines})
    wanted: dict[int, list[Values]] = {shipment_id: [] for shipment_id in ids}
    for shipment_id, lines in manifests.items():
        linked = orders_by_shipment[shipment_id]
        only_order = next(iter(linked)) if len(linked) == 1 else None
        merged: dict[tuple[int | None, str], list[Any]] = {}
        for line in lines:
            order_id = _line_order(line.get("order"), linked, orders_by_ref) if line.get("order") else only_order
            key = (order_id, line["sku"])
            if key in merged:
                merged[key][2] += Decimal(line["quantity"])
            else:
                merged[key] = [order_id, line["sku"], Decimal(line["quantity"]), line.get("uom", "EA")]
        wanted[shipment_id] = [tuple(values) for values in merged.values()]
    _replace_changed_lines(ShipmentLine, "shipment_id", wanted, ["order_id", "sku", "quantity", "uom"])


def _latest_manifest_lines(ids: set[int]) -> dict[int, list[dict[str, Any]]]:
    """The lines of each shipment's latest manifest (by occurred_at, event_id) that lists any."""
    manifests = (
        Milestone.objects.filter(shipment_id__any=ids, kind=K.SHIPMENT_MANIFESTED)
        .order_by()
        .values_list("shipment_id", "occurred_at", "event_id", "lines")
    )
    latest = {}
    for shipment_id, _at, _event_id, lines in sorted(manifests, key=itemgetter(1, 2)):
        if lines:
            latest[shipment_id] = lines
    return latest


def _linked_orders(shipment_ids: set[int]) -> dict[int, set[int]]:
    linked: dict[int, set[int]] = defaultdict(set)
    if shipment_ids:
        through = Shipment.orders.through
        for shipment_id, order_id in through.objects.filter(shipment_id__any=shipment_ids).values_list(
            "shipment_id", "order_id"
        ):
            linked[shipment_id].add(order_id)
    return linked


def _orders_by_reference(values: set[str | None]) -> dict[str, list[tuple[str, int]]]:
    """(number, id) of the orders each reference value names."""
    orders: dict[str, list[tuple[str, int]]] = defaultdict(list)
    named = {value for value in values if value}
    if named:
        refs = Reference.objects.filter(value__any=named, order__isnull=False)
        for value, order_id, number in refs.values_list("value", "order_id", "order__number"):
            orders[value].append((number, order_id))
    return orders


def _line_order(ref: str, linked: set[int], orders_by_ref: dict[str, list[tuple[str, int]]]) -> int | None:
    """The order a manifest line names, among the orders its shipment is linked to (lowest number)."""
    candidates = sorted(pair for pair in orders_by_ref.get(ref, ()) if pair[1] in linked)
    return candidates[0][1] if candidates else None


# --- orders -----------------------------------------------------------------------------------


def _recompute_orders(ids: set[int], with_new_headers: set[int]) -> None:
    headers = _order_headers(with_new_headers)
    customers = _partner_ids(header["order"].get("customer") for header in headers.values())
    if _is_postgresql(Order):
        _update_order_milestones_in_sql(ids)
    else:
        _save_changed(Order, ORDER_MILESTONE_FIELDS, projected_order_milestones(ids))
    projected_headers = {order_id: _project_header(header, customers) for order_id, header in headers.items()}
    _save_changed(Order, ORDER_HEADER_FIELDS, projected_headers)
    _rebuild_order_lines(headers)


def projected_order_milestones(ids: set[int]) -> dict[int, Values]:
    """Each order's ``ORDER_MILESTONE_FIELDS``, projected in Python from its milestones and shipments.

    The reference projection: PostgreSQL runs the same one in SQL (``_update_order_milestones_in_sql``),
    and the tests hold the two equal.
    """
    times = _order_milestone_times(ids)
    shipments = _shipments_by_order(ids)
    projected = {}
    for order_id in ids:
        first, last = times.get(order_id, ({}, None))
        projected[order_id] = _project_order(first, last, shipments.get(order_id, []))
    return projected


def _update_order_milestones_in_sql(ids: set[int]) -> None:
    """``projected_order_milestones`` as one PostgreSQL statement that writes only the orders it changes.

    The milestones are aggregated where they are stored (first time of each kind, latest of all)
    and the shipments by order, so no milestone, shipment or projected value travels to Python.
    """
    connection = connections[router.db_for_write(Order)]
    stages = {f"stage_{index}": stage.value for index, (_, stage) in enumerate(ORDER_STAGE_LADDER)}
    params = {
        "ids": list(ids),
        "now": timezone.now(),
        "cancelled": OrderStage.CANCELLED.value,
        "created": OrderStage.CREATED.value,
        **{f"kind_{index}": kind.value for index, kind in enumerate(ORDER_TIMED_KINDS)},
        **stages,
    }
    with connection.cursor() as cursor:
        cursor.execute(_order_milestones_sql(connection.ops.quote_name), params)


def _order_milestones_sql(quote: Callable[[str], str]) -> str:
    """The statement of ``_update_order_milestones_in_sql``, step for step ``_project_order``."""
    firsts = ", ".join(
        f"min(occurred_at) FILTER (WHERE kind = %(kind_{index})s) AS {name}"
        for index, name in enumerate([*ORDER_FIRST_FIELDS.values(), *ORDER_OWN_SHIPPING_TIMES])
    )
    ladder = " ".join(
        f"WHEN {name} IS NOT NULL THEN %(stage_{index})s" for index, (name, _) in enumerate(ORDER_STAGE_LADDER)
    )
    columns = [quote(Order._meta.get_field(name).column) for name in ORDER_MILESTONE_FIELDS]
    assignments = ", ".join(
        f"{column} = v.{name}" for column, name in zip(columns, ORDER_MILESTONE_FIELDS, strict=True)
    )
    stored = ", ".join(f"t.{column}" for column in columns)
    projected = ", ".join(f"v.{name}" for name in ORDER_MILESTONE_FIELDS)
    milestones, links, shipments = (quote(m._meta.db_table) for m in (Milestone, Shipment.orders.through, Shipment))
    # Only the quoted names of our own tables and columns are interpolated; values are parameters.
    return f"""
        WITH times AS (
            SELECT order_id, max(occurred_at) AS latest, {firsts}
            FROM {milestones} WHERE order_id = ANY(%(ids)s) GROUP BY order_id
        ), shipments AS (
            SELECT l.order_id, count(*) AS linked, min(s.manifested_at) AS manifested_at,
                count(s.delivered_at) AS delivered, max(s.delivered_at) AS delivered_at,
                count(s.pod_at) AS with_pod, max(s.pod_at) AS pod_at,
                max(greatest(s.manifested_at, s.last_carrier_event_at)) AS last_event_at
            FROM {links} AS l JOIN {shipments} AS s ON s.id = l.shipment_id
            WHERE l.order_id = ANY(%(ids)s) GROUP BY l.order_id
        ), reached AS (
            SELECT o.id, {", ".join(f"t.{name}" for name in ORDER_FIRST_FIELDS.values())},
                coalesce(s.manifested_at, t.own_shipped) AS shipped_at,
                CASE WHEN s.linked IS NULL THEN t.own_delivered
                    WHEN s.delivered = s.linked THEN s.delivered_at END AS delivered_at,
                CASE WHEN s.linked IS NULL THEN t.own_pod WHEN s.with_pod = s.linked THEN s.pod_at END AS pod_at,
                nullif(s.delivered, 0) AS some_delivered,
                greatest(t.latest, s.last_event_at) AS last_event_at
            FROM unnest(%(ids)s::bigint[]) AS o (id)
            LEFT JOIN times AS t ON t.order_id = o.id LEFT JOIN shipments AS s ON s.order_id = o.id
        ), v AS (
            SELECT reached.*, CASE WHEN cancelled_at IS NOT NULL AND shipped_at IS NULL THEN %(cancelled)s
                {ladder} ELSE %(created)s END AS stage
            FROM reached
        )
        UPDATE {quote(Order._meta.db_table)} AS t SET {assignments}, {quote("updated_at")} = %(now)s
        FROM v WHERE t.id = v.id AND ROW({stored}) IS DISTINCT FROM ROW({projected})
    """  # noqa: S608


def _order_milestone_times(ids: set[int]) -> dict[int, tuple[dict[str, datetime | None], datetime | None]]:
    """Per order: when each kind it tracks first happened, and its latest milestone.

    That is all an order's fields need: of milestones tied on time, whichever sorts first by
    event id gives the same value.
    """
    firsts = {f"first_{index}": Min("occurred_at", filter=Q(kind=kind)) for index, kind in enumerate(ORDER_TIMED_KINDS)}
    rows = (
        Milestone.objects.filter(order_id__any=ids)
        .order_by()
        .values("order_id")
        .annotate(latest=Max("occurred_at"), **firsts)
        .values_list("order_id", "latest", *firsts)
    )
    return {order_id: (dict(zip(ORDER_TIMED_KINDS, times, strict=True)), latest) for order_id, latest, *times in rows}


def _order_headers(ids: set[int]) -> dict[int, dict[str, Any]]:
    """The latest ``order.created`` of each order: later corrections win."""
    created = (
        Milestone.objects.filter(order_id__any=ids, kind=K.ORDER_CREATED)
        .order_by("occurred_at", "event_id")
        .values_list("order_id", "payload__order", "lines", "amount", "currency")
    )
    return {
        order_id: {"order": info or {}, "lines": lines, "amount": amount, "currency": currency}
        for order_id, info, lines, amount, currency in created
    }


def _project_header(header: dict[str, Any], customer_ids: dict[str, int]) -> Values:
    """The order's ``ORDER_HEADER_FIELDS``."""
    info, lines, total = header["order"], header["lines"], header["amount"]
    if total is None and lines:
        priced = [line for line in lines if line.get("unit_price") is not None]
        if priced:
            total = sum(Decimal(line["quantity"]) * Decimal(line["unit_price"]) for line in priced)
    promised_at = _parse_time(info.get("promised_at"))
    return (
        customer_ids.get(info.get("customer")),
        (info.get("region") or "")[:60],
        promised_at,
        header["currency"],
        total,
    )


def _parse_time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _shipments_by_order(ids: set[int]) -> dict[int, list[ShipmentTimes]]:
    through = Shipment.orders.through
    rows = through.objects.filter(order_id__any=ids).values_list(
        "order_id",
        "shipment__manifested_at",
        "shipment__delivered_at",
        "shipment__pod_at",
        "shipment__last_carrier_event_at",
    )
    grouped: dict[int, list[ShipmentTimes]] = defaultdict(list)
    for order_id, *times in rows:
        grouped[order_id].append(ShipmentTimes(*times))
    return grouped


def _project_order(
    first: dict[str, datetime | None], latest: datetime | None, shipments: list[ShipmentTimes]
) -> Values:
    """The order's ``ORDER_MILESTONE_FIELDS`` from its milestone times and its shipments."""
    state: dict[str, Any] = {name: first.get(kind) for kind, name in ORDER_FIRST_FIELDS.items()}
    manifested = [s.manifested_at for s in shipments if s.manifested_at]
    state["shipped_at"] = min(manifested, default=first.get(K.SHIPMENT_MANIFESTED))
    state["delivered_at"] = _when_all([s.delivered_at for s in shipments], first.get(K.SHIPMENT_DELIVERED))
    state["pod_at"] = _when_all([s.pod_at for s in shipments], first.get(K.SHIPMENT_POD_RECEIVED))
    state["stage"] = _order_stage(state, some_delivered=any(s.delivered_at for s in shipments))
    times = [t for s in shipments for t in (s.manifested_at, s.last_carrier_event_at) if t]
    state["last_event_at"] = max([latest, *times] if latest else times, default=None)
    return tuple(state[name] for name in ORDER_MILESTONE_FIELDS)


def _when_all(times: list[datetime | None], fallback: datetime | None) -> datetime | None:
    """When the last of the order's shipments got there; None while any has not."""
    if not times:
        return fallback
    reached = [t for t in times if t]
    return max(reached) if len(reached) == len(times) else None


def _order_stage(state: dict[str, Any], *, some_delivered: bool) -> str:
    if state["cancelled_at"] and not state["shipped_at"]:
        return OrderStage.CANCELLED
    reached = {**state, "some_delivered": some_delivered}
    return next((stage for name, stage in ORDER_STAGE_LADDER if reached[name]), OrderStage.CREATED)


def _rebuild_order_lines(headers: dict[int, dict[str, Any]]) -> None:
    """An order's lines are those of its latest ``order.created``, one per SKU."""
    wanted: dict[int, list[Values]] = {}
    for order_id, header in headers.items():
        merged: dict[str, list[Any]] = {}
        for line in header["lines"]:
            if line["sku"] in merged:
                merged[line["sku"]][2] += Decimal(line["quantity"])
                continue
            unit_price = line.get("unit_price")
            merged[line["sku"]] = [
                line["sku"],
                line.get("line_number") or "",
                Decimal(line["quantity"]),
                line.get("uom", "EA"),
                Decimal(unit_price) if unit_price is not None else None,
            ]
        wanted[order_id] = [tuple(values) for values in merged.values()]
    _replace_changed_lines(OrderLine, "order_id", wanted, ["sku", "line_number", "quantity", "uom", "unit_price"])


# --- inventory --------------------------------------------------------------------------------


def _warehouse_code(event: CanonicalEvent) -> str | None:
    code = event.attributes.get("warehouse") or event.source.partner
    return code if isinstance(code, str) else None


def inventory_rejection(event: CanonicalEvent, partners: dict[str, Partner]) -> str | None:
    """Why an inventory event cannot be applied, or None when it can."""
    code = _warehouse_code(event)
    if not code:
        return "inventory event names no warehouse (attributes.warehouse or the sending partner)"
    if code not in partners:
        return f"inventory event names unknown warehouse {code!r}"
    if not event.lines:
        return "inventory event has no lines"
    return None

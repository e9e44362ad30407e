"""Convergence: the timeline and every projection are a function of the *set* of events.

For random order-to-cash histories, any arrival order, split into any batches, with any
duplicates, must give exactly the state that applying the history at once gives; and once a
shipment is delivered, no later batch moves it back.
"""

from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import transaction
from hypothesis import given
from hypothesis import strategies as st

from apps.partners.models import Partner
from apps.timeline import projections
from apps.timeline.events import EventKind, parse_events
from apps.timeline.models import Order, Shipment
from apps.timeline.services import apply_events
from tests.snapshot import snapshot

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 10, 1, tzinfo=UTC)
CUSTOMERS = ("ACME", "GLOBEX")
CARRIERS = ("UPSN", "ODFL")
ORDER_STEPS = ("order.released", "order.allocated", "order.picked", "order.packed", "order.cancelled")
CARRIER_STEPS = (
    "shipment.tracking_assigned",
    "shipment.picked_up",
    "shipment.in_transit",
    "shipment.out_for_delivery",
    "shipment.delivery_attempted",
    "shipment.delivered",
    "shipment.pod_received",
    "shipment.delayed",
    "shipment.damaged",
    "shipment.eta_updated",
)
DELIVERED = {"delivered", "pod_received"}

hours = st.integers(min_value=0, max_value=400)
# Partners send reasons as codes, numbers, flags or structures; each is shown as the same text.
REASONS = st.one_of(
    st.sampled_from(["WX", "NS", "", 0, 12, 1.5, 0.00002, True, False, None, [], ["A1", 2], {"code": "WX"}]),
    st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=3),
)


def _ref(kind: str, value: str) -> dict[str, str]:
    return {"kind": kind, "value": value}


@st.composite
def histories(draw: st.DrawFn) -> list[dict[str, Any]]:
    """A random, internally consistent history of a few orders and shipments, each event unique."""
    items: list[dict[str, Any]] = []

    def add(kind: str, refs: list[dict[str, str]], **fields: Any) -> None:
        at = T0 + timedelta(hours=draw(hours), minutes=draw(st.sampled_from([0, 0, 30])))
        items.append(
            {"event_id": f"e{len(items)}", "kind": kind, "occurred_at": at.isoformat(), "references": refs, **fields}
        )

    n_orders = draw(st.integers(1, 3))
    # Several sales orders under one customer PO, several shipments under one master bill: events
    # that name only such a shared reference are ambiguous, so then steps use the order number.
    shared = draw(st.booleans())
    for o in range(n_orders):
        so, po = f"SO-{o}", f"PO-{o // 2 if shared else o}"
        for _ in range(draw(st.sampled_from([1, 1, 1, 2, 0]))):
            add(
                "order.created",
                [_ref("order", so), _ref("po", po)],
                order={
                    "customer": draw(st.sampled_from(CUSTOMERS)),
                    "promised_at": (T0 + timedelta(hours=draw(hours))).isoformat(),
                },
                lines=[{"sku": f"SKU-{o}", "quantity": str(draw(st.integers(1, 9))), "unit_price": "2.50"}],
            )
        for step in draw(st.lists(st.sampled_from(ORDER_STEPS), max_size=4)):
            kind = "order" if shared else draw(st.sampled_from(["order", "po"]))
            add(step, [_ref(kind, so if kind == "order" else po)])
        if draw(st.booleans()):
            add("invoice.generated", [_ref("invoice", f"INV-{o}"), _ref("order", so)], amount="25.00")
        for step in draw(st.lists(st.sampled_from(["invoice.held", "invoice.released", "invoice.posted"]), max_size=2)):
            add(step, [_ref("invoice", f"INV-{o}")], attributes={"reason": "variance"})
        if draw(st.booleans()):
            add("return.authorized", [_ref("rma", f"RMA-{o}"), _ref("order", so)])
            if draw(st.booleans()):
                add("return.received", [_ref("rma", f"RMA-{o}")])

    for s in range(draw(st.integers(0, 3))):
        tracking, pro = f"1Z{s:04d}", f"PRO-{s}"
        orders = sorted(draw(st.sets(st.integers(0, n_orders - 1), min_size=1, max_size=2)))
        for _ in range(draw(st.sampled_from([1, 1, 1, 2, 0]))):
            add(
                "shipment.manifested",
                [
                    _ref("shipment", f"SH-{s}"),
                    _ref("tracking", tracking),
                    _ref("bol", f"MB-{s // 2 if shared else s}"),
                    *(_ref("order", f"SO-{o}") for o in orders),
                ],
                lines=[
                    {"sku": f"SKU-{o}", "quantity": str(draw(st.integers(1, 9))), "order": f"SO-{o}"} for o in orders
                ],
                attributes={
                    "carrier": draw(st.sampled_from([*CARRIERS, "NOPE", 7])),
                    **({"warehouse": "DC1"} if draw(st.booleans()) else {}),
                },
            )
        for step in draw(st.lists(st.sampled_from(CARRIER_STEPS), max_size=6)):
            refs = [_ref("tracking", tracking)]
            if draw(st.booleans()):
                refs.append(_ref("pro", pro))
            fields: dict[str, Any] = {"attributes": {"reason": draw(REASONS)}}
            if draw(st.integers(0, 3)) == 0:
                fields["attributes"]["carrier"] = draw(st.sampled_from(CARRIERS))
            if step == "shipment.eta_updated" or draw(st.booleans()):
                fields["estimated_delivery_at"] = (T0 + timedelta(hours=draw(hours))).isoformat()
            add(step, refs, **fields)
            if draw(st.integers(0, 4)) == 0:
                # The same status from a second channel (a webhook echoing the 214): same time.
                items.append({**items[-1], "event_id": f"e{len(items)}", "location": {"city": "Elsewhere"}})
        if draw(st.booleans()):
            add("freight.charge_posted", [_ref("pro", pro), _ref("invoice", f"FB-{s}")], amount="99.00")
            for step in draw(
                st.lists(st.sampled_from(["freight.charge_disputed", "freight.charge_settled"]), max_size=2)
            ):
                add(step, [_ref("pro", pro), _ref("invoice", f"FB-{s}")])

    for _ in range(draw(st.integers(0, 2))):
        kind = draw(st.sampled_from(["inventory.snapshot", "inventory.adjusted"]))
        add(
            kind,
            [],
            lines=[{"sku": "SKU-0", "quantity": str(draw(st.integers(-5, 50)))}],
            attributes={"warehouse": "DC1"},
        )
    return items


@contextmanager
def rolled_back():
    """Run a block and undo everything it wrote, so each run starts from the same state."""
    savepoint = transaction.savepoint()
    try:
        yield
    finally:
        transaction.savepoint_rollback(savepoint)


def _assert_orders_as_the_reference_projects_them() -> None:
    """What an apply wrote of each order is what the Python projection makes of its whole history."""
    stored = {row[0]: row[1:] for row in Order.objects.values_list("pk", *projections.ORDER_MILESTONE_FIELDS)}
    assert stored == projections.projected_order_milestones(set(stored))


def _assert_shipments_as_the_reference_projects_them() -> None:
    """What an apply wrote of each shipment is what the Python projection makes of its whole history."""
    stored = {row[0]: row[1:] for row in Shipment.objects.values_list("pk", *projections.SHIPMENT_FIELDS)}
    assert stored == projections.projected_shipment_fields(set(stored))


def _apply(batches: list[list[dict[str, Any]]]) -> dict[str, Any]:
    delivered: set[str] = set()
    for batch in batches:
        apply_events(parse_events(batch))
        _assert_shipments_as_the_reference_projects_them()
        _assert_orders_as_the_reference_projects_them()
        now = dict(Shipment.objects.values_list("number", "status"))
        regressed = {number for number in delivered if now[number] not in DELIVERED}
        assert not regressed, f"delivered shipments moved back: {regressed}"
        delivered |= {number for number, status in now.items() if status in DELIVERED}
    return snapshot()


def _partners() -> None:
    for code in CUSTOMERS:
        Partner.objects.create(code=code, name=code, kind=Partner.Kind.CUSTOMER)
    for code in CARRIERS:
        Partner.objects.create(code=code, name=code, kind=Partner.Kind.CARRIER)
    Partner.objects.create(code="DC1", name="DC1", kind=Partner.Kind.WAREHOUSE)


@given(history=histories(), data=st.data())
def test_any_arrival_order_with_duplicates_gives_the_same_state(history, data):
    with rolled_back():
        _partners()
        with rolled_back():
            expected = _apply([history])

        stream = data.draw(st.permutations(history), label="arrival order")
        duplicates = (
            data.draw(st.lists(st.sampled_from(history), max_size=len(history)), label="duplicates") if history else []
        )
        for duplicate in duplicates:
            stream.insert(data.draw(st.integers(0, len(stream)), label="position"), duplicate)
        cuts = sorted(data.draw(st.sets(st.integers(1, max(1, len(stream) - 1)), max_size=6), label="batch cuts"))
        batches = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True) if stream[a:b]]
        with rolled_back():
            actual = _apply(batches)

    assert actual == expected


def test_the_generator_covers_every_family_of_events():
    """Guard against a generator that silently stops producing some kinds of events."""
    produced: set[str] = set()

    @given(history=histories())
    def collect(history):
        produced.update(item["kind"] for item in history)

    collect()
    assert {kind.split(".")[0] for kind in produced} == {kind.family for kind in EventKind}

"""Positions are a function of the set of stock events: any arrival order, batching and
duplication gives what a plain reading of the set gives (the latest count, the movements after it)."""

from collections import defaultdict
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.db import transaction
from hypothesis import given
from hypothesis import strategies as st

from apps.inventory.models import InventoryPosition
from apps.partners.models import Partner
from apps.timeline.events import EventSource, parse_events
from apps.timeline.services import apply_events

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 10, 1, tzinfo=UTC)
SENDERS = {"DC1": "on_hand", "ERP": "book"}
lines = st.lists(
    st.tuples(st.sampled_from(["SKU-A", "SKU-B", "SKU-C"]), st.integers(-20, 60), st.sampled_from(["EA", "EA", "CS"])),
    min_size=1,
    max_size=3,
)


@st.composite
def stock_events(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Snapshots (partial or full) and movements from the warehouse and the ERP, few distinct
    times so that ties happen."""
    items = []
    for n in range(draw(st.integers(1, 9))):
        snapshot = draw(st.booleans())
        attributes = {"warehouse": "DC1"}
        if snapshot and draw(st.booleans()):
            attributes["snapshot"] = "full"
        items.append(
            {
                "event_id": f"e{n}",
                "kind": "inventory.snapshot" if snapshot else "inventory.adjusted",
                "occurred_at": (T0 + timedelta(hours=draw(st.integers(0, 6)))).isoformat(),
                "sender": draw(st.sampled_from(sorted(SENDERS))),
                "lines": [{"sku": s, "quantity": str(q), "uom": u} for s, q, u in draw(lines)],
                "attributes": attributes,
            }
        )
    return items


def expected(items: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """What the set says: per position and view, the greatest count (time, a reported line over a
    full snapshot's omission, event id) plus the movements after it."""
    keys = {(line["sku"], line["uom"]) for item in items for line in item["lines"]}
    state: dict[tuple[str, str], dict[str, Any]] = {}
    for key in keys:
        row = {}
        for sender, view in SENDERS.items():
            mine = [item for item in items if item["sender"] == sender]
            counts = []
            times = []
            for item in mine:
                at = datetime.fromisoformat(item["occurred_at"])
                named = [Decimal(line["quantity"]) for line in item["lines"] if (line["sku"], line["uom"]) == key]
                if named:
                    times.append(at)
                if item["kind"] == "inventory.snapshot":
                    if named:
                        counts.append((at, 1, item["event_id"], sum(named)))
                    if item["attributes"].get("snapshot") == "full":
                        counts.append((at, 0, item["event_id"], Decimal(0)))
                        times.append(at)
            count = max(counts, default=None)
            moved = sum(
                (
                    Decimal(line["quantity"])
                    for item in mine
                    if item["kind"] == "inventory.adjusted"
                    and (count is None or datetime.fromisoformat(item["occurred_at"]) > count[0])
                    for line in item["lines"]
                    if (line["sku"], line["uom"]) == key
                ),
                Decimal(0),
            )
            known = count is not None or any(times)
            row[view] = (count[3] if count else Decimal(0)) + moved if known else None
            row[f"{view}_as_of"] = max(times, default=None)
        state[key] = row
    return state


def actual() -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (p.sku, p.uom): {
            "on_hand": p.quantity,
            "on_hand_as_of": p.as_of,
            "book": p.book_quantity,
            "book_as_of": p.book_as_of,
        }
        for p in InventoryPosition.objects.all()
    }


def _apply(batches: list[list[dict[str, Any]]]) -> dict[tuple[str, str], dict[str, Any]]:
    for batch in batches:
        by_sender = defaultdict(list)
        for item in batch:
            by_sender[item["sender"]].append({k: v for k, v in item.items() if k != "sender"})
        for sender, group in by_sender.items():
            apply_events(parse_events(group, source=EventSource(partner=sender)))
    return actual()


@contextmanager
def rolled_back():
    savepoint = transaction.savepoint()
    try:
        yield
    finally:
        transaction.savepoint_rollback(savepoint)


@given(items=stock_events(), data=st.data())
def test_positions_converge_on_what_the_set_of_events_says(items, data):
    with rolled_back():
        Partner.objects.create(code="DC1", name="DC1", kind=Partner.Kind.WAREHOUSE)
        Partner.objects.create(code="ERP", name="ERP", kind=Partner.Kind.ERP)
        stream = data.draw(st.permutations(items), label="arrival order")
        for duplicate in data.draw(st.lists(st.sampled_from(items), max_size=4), label="duplicates"):
            stream.insert(data.draw(st.integers(0, len(stream)), label="position"), duplicate)
        cuts = sorted(data.draw(st.sets(st.integers(1, max(1, len(stream) - 1)), max_size=4), label="batch cuts"))
        batches = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True) if stream[a:b]]
        assert _apply(batches) == expected(items)

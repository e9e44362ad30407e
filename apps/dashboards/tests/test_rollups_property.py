"""Incremental rollups equal a from-scratch recomputation, whatever the stream of events.

Random order-to-cash histories arrive shuffled, duplicated and cut into batches; after each
batch the KPIs of the orders it touched are refreshed, as the worker does after every apply. At
the end the rollups must be what recomputing every fact from the final timeline gives.
"""

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from apps.dashboards.services import kpis_refresh, rollups_differing
from apps.partners.models import Partner
from apps.timeline.events import parse_events
from apps.timeline.services import apply_events
from tests.test_convergence import rolled_back

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 10, 1, tzinfo=UTC)
CUSTOMERS = (("ACME", "EU-West"), ("GLOBEX", "US-East"))
CARRIERS = ("UPSN", "ODFL")
WAREHOUSES = ("DC1", "DC2")


@st.composite
def histories(draw: st.DrawFn) -> list[dict[str, Any]]:
    """A few orders, each taking some of the steps from creation to cash, at random times."""
    items: list[dict[str, Any]] = []

    def add(kind: str, refs: list[tuple[str, str]], chance: float = 1.0, **fields: Any) -> None:
        if chance < 1 and draw(st.floats(0, 1)) > chance:
            return
        at = T0 + timedelta(hours=draw(st.integers(0, 300)), minutes=draw(st.sampled_from([0, 30])))
        references = [{"kind": k, "value": v} for k, v in refs]
        items.append(
            {
                "event_id": f"e{len(items)}",
                "kind": kind,
                "occurred_at": at.isoformat(),
                "references": references,
                **fields,
            }
        )

    for o in range(draw(st.integers(1, 4))):
        so = ("order", f"SO-{o}")
        customer, region = draw(st.sampled_from(CUSTOMERS))
        promised = T0 + timedelta(hours=draw(st.integers(24, 300)))
        add(
            "order.created",
            [so],
            order={"customer": customer, "region": region, "promised_at": promised.isoformat()},
            lines=[{"sku": "SKU", "quantity": str(draw(st.integers(1, 9)))}],
        )
        for step in ("order.released", "order.picked"):
            add(step, [so], chance=0.8)
        for s in range(draw(st.integers(0, 2))):
            shipment, tracking = ("shipment", f"SH-{o}-{s}"), ("tracking", f"1Z{o}{s}")
            add(
                "shipment.manifested",
                [shipment, tracking, so],
                lines=[{"sku": "SKU", "quantity": str(draw(st.integers(1, 9)))}],
                attributes={"carrier": draw(st.sampled_from(CARRIERS)), "warehouse": draw(st.sampled_from(WAREHOUSES))},
            )
            add("shipment.picked_up", [tracking], chance=0.6)
            add("shipment.delivered", [tracking], chance=0.7)
            add("freight.charge_posted", [tracking, ("invoice", f"FB-{o}-{s}")], chance=0.5, amount="90")
            add("freight.charge_settled", [tracking, ("invoice", f"FB-{o}-{s}")], chance=0.5)
        add("invoice.generated", [("invoice", f"INV-{o}"), so], chance=0.5, amount="20")
    return items


def _partners() -> None:
    for code, region in CUSTOMERS:
        Partner.objects.create(code=code, name=code, kind=Partner.Kind.CUSTOMER, region=region)
    for code in CARRIERS:
        Partner.objects.create(code=code, name=code, kind=Partner.Kind.CARRIER)
    for code in WAREHOUSES:
        Partner.objects.create(code=code, name=code, kind=Partner.Kind.WAREHOUSE)


@given(history=histories(), data=st.data())
def test_incremental_rollups_equal_a_recomputation(history, data):
    with rolled_back():
        _partners()
        stream = data.draw(st.permutations(history), label="arrival order")
        stream += data.draw(st.lists(st.sampled_from(history), max_size=5), label="duplicates")
        cuts = sorted(data.draw(st.sets(st.integers(1, max(1, len(stream) - 1)), max_size=6), label="batch cuts"))
        for start, end in zip([0, *cuts], [*cuts, len(stream)], strict=True):
            if stream[start:end]:
                result = apply_events(parse_events(stream[start:end]))
                kpis_refresh(order_ids=result.order_ids)
        differing = rollups_differing()

    assert differing == []

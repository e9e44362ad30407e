"""The KPI story of test_kpis.py, shared with the page tests."""

import pytest

from apps.dashboards.services import kpis_refresh
from apps.partners.models import Partner
from apps.timeline.models import Order
from apps.timeline.services import apply_events
from tests.stories import at, carrier, event, events, manifested, order_created, ref


def _order(number: str, customer: str, region: str, *, promised: float | None = None, quantity: str = "5"):
    header = {"customer": customer, "region": region}
    if promised is not None:
        header["promised_at"] = at(promised)
    return order_created(number, order=header, lines=[{"sku": "SKU-1", "quantity": quantity}])


def step(number: str, kind: str, hours: float):
    return event(f"{number}-{kind}", kind, hours, ref("order", number))


def _ship(shipment: str, tracking: str, order: str, hours: float, carrier_code: str, quantity: str):
    return manifested(
        shipment,
        tracking,
        order,
        hours=hours,
        lines=[{"sku": "SKU-1", "quantity": quantity}],
        attributes={"carrier": carrier_code, "warehouse": "LYON"},
    )


@pytest.fixture
def story():
    for code, kind, region in [
        ("ACME", "customer", "EU-West"),
        ("BETA", "customer", "US-East"),
        ("DHLX", "carrier", ""),
        ("UPSX", "carrier", ""),
        ("LYON", "warehouse", ""),
    ]:
        Partner.objects.create(code=code, name=code, kind=kind, region=region)
    apply_events(
        events(
            _order("SO-A", "ACME", "EU-West", promised=48),
            step("SO-A", "order.released", 1),
            step("SO-A", "order.picked", 5),
            _ship("SH-A", "1ZA", "SO-A", 7, "DHLX", "5"),
            carrier("1ZA", "shipment.picked_up", 8),
            carrier("1ZA", "shipment.delivered", 32),
            event("INV-A", "invoice.generated", 56, ref("invoice", "INV-A"), ref("order", "SO-A"), amount="50"),
            _order("SO-B", "ACME", "EU-West", promised=50, quantity="10"),
            step("SO-B", "order.released", 2),
            _ship("SH-B", "1ZB", "SO-B", 10, "UPSX", "4"),
            carrier("1ZB", "shipment.delivered", 60),
            _order("SO-C", "BETA", "US-East", promised=30),
            step("SO-C", "order.released", 3),
            step("SO-C", "order.picked", 4),
            _ship("SH-C1", "1ZC1", "SO-C", 9, "DHLX", "3"),
            _ship("SH-C2", "1ZC2", "SO-C", 12, "UPSX", "2"),
            carrier("1ZC1", "shipment.picked_up", 10),
            carrier("1ZC1", "shipment.delivered", 20),
            _order("SO-D", "BETA", "US-East"),
            step("SO-D", "order.released", 3),
        )
    )
    kpis_refresh(order_ids=Order.objects.values_list("id", flat=True))
    return {p.code: p for p in Partner.objects.all()}

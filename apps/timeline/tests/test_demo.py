"""The demo world: every stage, consolidation and splits, lateness, parking, idempotency, the login."""

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.db.models import Count, F
from django.utils import timezone

from apps.exceptions.models import ExceptionCase
from apps.exceptions.services import builtin_rules_ensure
from apps.inventory.models import InventoryPosition, StockAccuracy
from apps.inventory.selectors import DEFAULT_MISMATCH_PERCENT, mismatched_positions
from apps.partners.models import Partner
from apps.predictions.models import BacktestReport, Prediction
from apps.timeline.demo import DEFAULT_SEED, DISRUPTION, DemoSummary, demo_events, seed_demo, skip_weekends
from apps.timeline.events import parse_events
from apps.timeline.models import Milestone, Order, OrderStage, ParkedEvent, Shipment, ShipmentLine
from apps.timeline.services import apply_events

ORDERS = 40
NOW = timezone.now()

pytestmark = pytest.mark.django_db


@pytest.fixture
def seeded() -> DemoSummary:
    return seed_demo(orders=ORDERS, now=NOW)


def test_every_order_stage_appears(seeded):
    stages = dict(Order.objects.order_by().values_list("stage").annotate(count=Count("id")))

    assert seeded.orders == Order.objects.count() == ORDERS
    assert {stage: stages.get(stage, 0) >= 1 for stage in OrderStage.values} == dict.fromkeys(OrderStage.values, True)
    assert seeded.stages == {stage: stages.get(stage, 0) for stage in OrderStage.values}


def test_shipments_consolidate_orders_and_orders_split_over_shipments(seeded):
    consolidated = Shipment.objects.annotate(orders_count=Count("orders")).filter(orders_count__gt=1)
    split = Order.objects.annotate(shipments_count=Count("shipments")).filter(shipments_count__gt=1)

    assert consolidated.exists()
    assert split.exists()
    shipment = consolidated.first()
    line_orders = set(ShipmentLine.objects.filter(shipment=shipment).values_list("order_id", flat=True))
    assert line_orders == set(shipment.orders.values_list("id", flat=True))


def test_some_orders_are_late_or_at_risk(seeded):
    open_orders = Order.objects.filter(delivered_at__isnull=True).exclude(stage=OrderStage.CANCELLED)

    assert open_orders.filter(promised_at__lt=NOW, shipments__isnull=False).exists()
    assert Order.objects.filter(delivered_at__gt=F("promised_at")).exists()
    assert open_orders.filter(promised_at__gt=NOW, shipments__estimated_delivery_at__gt=F("promised_at")).exists()


def test_troubles_show_on_shipments(seeded):
    shipments = Shipment.objects.all()

    assert shipments.exclude(delay_reason="").exists()
    assert shipments.filter(delivery_attempted_at__isnull=False).exists()
    assert shipments.filter(damaged_at__isnull=False).exists()
    assert shipments.filter(refused_at__isnull=False).exists()
    assert shipments.filter(tracking_number="").exists()


def test_stray_events_stay_parked_and_early_tracking_waits_for_its_manifest(seeded):
    assert seeded.parked == ParkedEvent.objects.count() > 0
    assert all("-stray-" in event_id for event_id in ParkedEvent.objects.values_list("event_id", flat=True))
    assert seeded.unparked > 0
    assert seeded.rejected == 0


def test_everything_is_applied_from_a_partner_channel_and_in_the_past(seeded):
    milestones = Milestone.objects.all()

    assert milestones.count() == seeded.milestones == seeded.applied
    assert not milestones.filter(source_partner__isnull=True).exists()
    assert not milestones.filter(source_channel__isnull=True).exists()
    assert not milestones.filter(occurred_at__gt=NOW).exists()
    assert Partner.objects.count() == seeded.partners


def test_running_again_applies_nothing_new(seeded):
    counts = (Order.objects.count(), Shipment.objects.count(), Milestone.objects.count(), ParkedEvent.objects.count())

    again = seed_demo(orders=ORDERS, now=NOW + timedelta(hours=5))

    assert again.applied == 0
    assert again.duplicates == again.events == seeded.events
    assert (again.orders, again.shipments, again.milestones, again.parked) == counts
    assert again.stages == seeded.stages


def test_event_ids_do_not_depend_on_now():
    def ids(now):
        return [event.body["event_id"] for event in demo_events(orders=ORDERS, seed=7, now=now)]

    assert ids(NOW) == ids(NOW - timedelta(days=3))
    assert len(set(ids(NOW))) == len(ids(NOW))


def test_command_prints_a_summary_and_the_demo_user_can_log_in(client):
    out = StringIO()

    call_command("seed_demo", orders=ORDERS, user="demo", password="control-tower-demo", stdout=out, verbosity=0)
    call_command("seed_demo", orders=ORDERS, user="demo", password="control-tower-demo", stdout=out, verbosity=0)

    assert f"orders {ORDERS}" in out.getvalue()
    assert "applied 0 " in out.getvalue()
    assert client.login(username="demo", password="control-tower-demo")


def test_after_seeding_new_events_reach_the_demo_receivers(settings, tmp_path, django_capture_on_commit_callbacks):
    settings.OUTBOX_DIR = tmp_path
    call_command("seed_demo", orders=ORDERS, stdout=StringIO(), verbosity=0)
    assert not list(tmp_path.iterdir()), "the seeded history is not published"
    order = Order.objects.filter(customer__code="BERGMANN").first()

    with django_capture_on_commit_callbacks(execute=True):
        apply_events(
            parse_events(
                [
                    {
                        "event_id": "demo-cancel-1",
                        "kind": "order.cancelled",
                        "occurred_at": "2026-11-20T14:03:00+01:00",
                        "references": [{"kind": "order", "value": order.number}],
                    }
                ]
            )
        )

    [written] = (tmp_path / "ERP" / "outbox").iterdir()
    assert '"kind":"order.cancelled"' in written.read_text()


def test_the_demo_has_predictions_and_a_backtest():
    out = StringIO()
    call_command("seed_demo", orders=ORDERS, stdout=out, verbosity=0)

    picked_up = Shipment.objects.filter(delivered_at__isnull=True, picked_up_at__isnull=False)
    assert set(Prediction.objects.values_list("shipment_id", flat=True)) >= set(picked_up.values_list("id", flat=True))
    assert not Prediction.objects.filter(shipment__delivered_at__isnull=False).exists()
    pickup = BacktestReport.objects.get().figures["stages"][0]["carriers"][0]
    assert pickup["points"] > 0
    assert f"Predictions: {Prediction.objects.count()} shipments on their way" in out.getvalue()


def test_the_erps_book_stock_drifts_from_the_warehouses_so_stock_cases_are_open():
    builtin_rules_ensure()  # as the migrations do
    out = StringIO()
    call_command("seed_demo", orders=ORDERS, stdout=out, verbosity=0)
    mismatched = mismatched_positions(default_percent=DEFAULT_MISMATCH_PERCENT)
    open_cases = ExceptionCase.objects.filter(status__in=ExceptionCase.OPEN_STATUSES)

    assert InventoryPosition.objects.filter(quantity__isnull=False, book_quantity__isnull=False).exists()
    assert mismatched.exists()
    assert mismatched.count() < InventoryPosition.objects.count()
    assert set(open_cases.filter(queue="supply_chain").values_list("rule__code", flat=True)) >= {
        "stock_mismatch",
        "stock_snapshot_stale",
    }
    assert "Exceptions: the sweep opened" in out.getvalue()
    assert StockAccuracy.objects.filter(snapshot_late=True).count() == 1


def _transits(events: list) -> list[tuple[str, str, datetime, float]]:
    """(carrier, pickup city → delivery city, picked up at, hours to delivery) of each delivered shipment."""
    picked, delivered = {}, {}
    for event in (e.body for e in events):
        tracking = frozenset((r["kind"], r["value"]) for r in event["references"])
        moment = event["occurred_at"].astimezone(UTC)
        if event["kind"] == "shipment.picked_up":
            picked[tracking] = (event["attributes"]["carrier"], event["location"]["city"], moment)
        elif event["kind"] == "shipment.delivered":
            delivered[tracking] = (moment, event["location"]["city"])
    return [
        (carrier, f"{city}→{delivered[tracking][1]}", at, (delivered[tracking][0] - at) / timedelta(hours=1))
        for tracking, (carrier, city, at) in picked.items()
        if tracking in delivered
    ]


PLACED = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)  # a Tuesday: the world's weekdays do not depend on today


@pytest.fixture(scope="module")
def history() -> list[tuple[str, str, datetime, float]]:
    return _transits(demo_events(orders=600, seed=DEFAULT_SEED, now=PLACED))


def test_freight_carriers_never_deliver_at_a_weekend_parcel_carriers_do(history):
    weekend = {carrier: 0 for carrier, *_ in history}
    for carrier, _, picked, hours in history:
        weekend[carrier] += (picked + timedelta(hours=hours)).weekday() >= 5

    assert {carrier: weekend[carrier] == 0 for carrier in ("RDLN", "NRDL", "SWPX")} == {
        "RDLN": True,
        "NRDL": True,
        "SWPX": False,
    }


NORTH_EAST = ("Boston", "Providence", "Worcester")  # Harborline's stores


def _disrupted(history: list, carrier: str, north_east: bool) -> list[float]:
    since, until = PLACED - timedelta(days=DISRUPTION.starts), PLACED - timedelta(days=DISRUPTION.ends)
    return sorted(
        hours
        for name, route, picked, hours in history
        if name == carrier and since <= picked < until and (route.split("→")[1] in NORTH_EAST) is north_east
    )


def test_the_disrupted_lane_is_slower_during_the_disruption_and_only_it(history, monkeypatch):
    monkeypatch.setattr("apps.timeline.demo.DISRUPTION", replace(DISRUPTION, factor=1.0))
    undisturbed = _transits(demo_events(orders=600, seed=DEFAULT_SEED, now=PLACED))

    slowed, usual = _disrupted(history, "RDLN", True), _disrupted(undisturbed, "RDLN", True)
    assert len(slowed) >= 5
    assert slowed[len(slowed) // 2] > 1.15 * usual[len(usual) // 2]
    assert _disrupted(history, "RDLN", False) == _disrupted(undisturbed, "RDLN", False)  # to Maple Leaf


def test_a_weekend_holds_a_freight_carrier_till_monday():
    friday_evening = datetime(2026, 11, 6, 20, 0, tzinfo=UTC)

    assert skip_weekends(friday_evening, 2) == datetime(2026, 11, 6, 22, 0, tzinfo=UTC)
    assert skip_weekends(friday_evening, 10) == datetime(2026, 11, 9, 6, 0, tzinfo=UTC)
    assert skip_weekends(datetime(2026, 11, 7, 9, 0, tzinfo=UTC), 1) == datetime(2026, 11, 9, 1, 0, tzinfo=UTC)

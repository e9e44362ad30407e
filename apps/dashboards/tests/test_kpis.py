"""KPIs against figures worked out by hand on a small, awkward fixture.

Four orders (T0 = 2 Nov 2026 08:00 UTC):

- SO-A (ACME, EU-West): released +1 h, picked +5 h, shipped +7 h (LYON, DHLX), picked up +8 h,
  delivered +32 h, promised +48 h, 5 of 5 shipped, invoiced +56 h. Everything on time and in full.
- SO-B (ACME, EU-West): released +2 h, never confirmed picked, shipped +10 h (LYON, UPSX) with 4
  of 10, no pick-up scan, delivered +60 h against a promise of +50 h. Late, short, incomplete.
- SO-C (BETA, US-East): released +3 h, picked +4 h, two shipments: +9 h (DHLX, picked up +10 h,
  delivered +20 h) and +12 h (UPSX, still on its way). Not delivered as an order.
- SO-D (BETA, US-East): released only.
"""

from datetime import UTC, date, datetime, timedelta
from io import StringIO

import pytest
from django.core.management import call_command

from apps.dashboards import histogram
from apps.dashboards.models import Fact, Metric, PendingRefresh, Rollup
from apps.dashboards.selectors import KpiFilter, case_ageing, drilldown, kpi_board, partners_by_id
from apps.dashboards.services import (
    FactRow,
    Totals,
    _add_to_rollups,
    _stored_facts,
    _upsert_facts,
    kpis_refresh,
    kpis_refresh_later,
    kpis_refresh_pending,
    rollups_differing,
    rollups_rebuild,
    rollups_stored,
)
from apps.dashboards.tests.conftest import step
from apps.exceptions.models import ExceptionCase
from apps.ingest.models import InboundMessage
from apps.partners.models import Partner
from apps.timeline.models import Order
from apps.timeline.services import apply_events
from tests.factories import ExceptionCaseFactory, InboundMessageFactory, OutboundMessageFactory
from tests.stories import carrier, events

pytestmark = pytest.mark.django_db

H = 3600
M = Metric
PERIOD = KpiFilter(start=date(2026, 11, 1), end=date(2026, 11, 7))


def _board(kpi_filter: KpiFilter = PERIOD):
    return kpi_board(kpi_filter, partners_by_id())


def test_fulfilment_times(story):
    tiles = _board().tiles
    # Released to shipped: A 6 h, B 8 h, C 6 h (its first shipment); D has not shipped.
    assert tiles[M.ORDER_TO_SHIP].count == 3
    assert tiles[M.ORDER_TO_SHIP].mean == pytest.approx((6 + 8 + 6) * H / 3)
    assert tiles[M.ORDER_TO_SHIP].p50 == 8 * H  # 6 h and 8 h both fall in the "≤ 8 h" bucket
    # Pick time needs a pick confirmation: A 4 h, C 1 h. B's is missing, so B is not counted.
    assert tiles[M.PICK_TIME].count == 2
    assert tiles[M.PICK_TIME].mean == pytest.approx(2.5 * H)
    # Picked to shipped: A 2 h, C 5 h.
    assert tiles[M.SHIP_TIME].mean == pytest.approx(3.5 * H)


def test_delivery_kpis_and_partial_shipments(story):
    tiles = _board().tiles
    # Transit from pick-up (or the manifest when the carrier never scanned a pick-up):
    # A 24 h, B 50 h (from its manifest), C1 10 h. C2 is not delivered.
    assert tiles[M.TRANSIT_TIME].count == 3
    assert tiles[M.TRANSIT_TIME].seconds_sum == pytest.approx((24 + 50 + 10) * H)
    # Only A and B are delivered as orders (C's second shipment is still out).
    assert (tiles[M.ON_TIME].hits, tiles[M.ON_TIME].count) == (1, 2)
    assert (tiles[M.IN_FULL].hits, tiles[M.IN_FULL].count) == (1, 2)  # B shipped 4 of 10
    assert tiles[M.OTIF].rate == 0.5
    assert tiles[M.COMPLETE_TIMELINE].rate == 0.5  # B has no pick confirmation
    assert tiles[M.DELIVERY_TO_INVOICE].mean == pytest.approx(24 * H)


def test_partner_comparison_holds_each_carrier_to_its_own_shipments(story):
    board = _board()
    transit = {partner.code: value.mean for partner, value in board.by_partner[M.TRANSIT_TIME]}
    assert transit == {"DHLX": pytest.approx(17 * H), "UPSX": pytest.approx(50 * H)}
    otif = {partner.code: value.rate for partner, value in board.by_partner[M.OTIF]}
    assert otif == {"DHLX": 1.0, "UPSX": 0.0}
    warehouses = {partner.code: value.count for partner, value in board.by_partner[M.ORDER_TO_SHIP]}
    assert warehouses == {"LYON": 3}


def test_filters_by_customer_region_and_partner(story):
    beta = _board(KpiFilter(start=PERIOD.start, end=PERIOD.end, customer_id=story["BETA"].id)).tiles
    assert beta[M.ORDER_TO_SHIP].mean == pytest.approx(6 * H)
    assert beta[M.OTIF].count == 0
    eu = _board(KpiFilter(start=PERIOD.start, end=PERIOD.end, region="EU-West")).tiles
    assert eu[M.ORDER_TO_SHIP].count == 2
    ups = _board(KpiFilter(start=PERIOD.start, end=PERIOD.end, partner_id=story["UPSX"].id)).tiles
    assert ups[M.TRANSIT_TIME].mean == pytest.approx(50 * H)


def test_days_follow_the_kpi_time_zone(story, settings):
    # C1 was delivered on 3 Nov 04:00 UTC, A on 3 Nov 16:00 UTC and B on 4 Nov 20:00 UTC.
    trend = dict(_board().trends[M.TRANSIT_TIME])
    assert [trend[date(2026, 11, day)].count for day in (2, 3, 4)] == [0, 2, 1]
    # In Los Angeles (UTC-8), C1's delivery is still the evening of 2 Nov.
    settings.KPI_TIME_ZONE = "America/Los_Angeles"
    rollups_rebuild()
    trend = dict(_board().trends[M.TRANSIT_TIME])
    assert [trend[date(2026, 11, day)].count for day in (2, 3, 4)] == [1, 1, 1]


def test_weekly_trend_groups_by_iso_week(story):
    board = _board(KpiFilter(start=date(2026, 10, 26), end=date(2026, 11, 15), grain="week"))
    weeks = [week for week, _ in board.trends[M.ORDER_TO_SHIP]]
    assert weeks == [date(2026, 10, 26), date(2026, 11, 2), date(2026, 11, 9)]
    assert [value.count for _, value in board.trends[M.ORDER_TO_SHIP]] == [0, 3, 0]


def test_a_later_event_moves_a_fact_and_the_rollups_follow(story):
    # B's late pick confirmation arrives: its timeline is now complete and it has a pick time.
    apply_events(events(step("SO-B", "order.picked", 6)))
    kpis_refresh(order_ids=Order.objects.filter(number="SO-B").values_list("id", flat=True))
    tiles = _board().tiles
    assert tiles[M.COMPLETE_TIMELINE].rate == 1.0
    assert tiles[M.PICK_TIME].count == 3
    assert rollups_differing() == []


def test_a_changed_duration_on_the_same_day_moves_the_rollup(story):
    # B's pick-up scan turns up: transit now runs from +30 h, not the manifest at +10 h.
    apply_events(events(carrier("1ZB", "shipment.picked_up", 30)))
    kpis_refresh(order_ids=Order.objects.filter(number="SO-B").values_list("id", flat=True))
    ups = _board(KpiFilter(start=PERIOD.start, end=PERIOD.end, partner_id=story["UPSX"].id)).tiles
    assert ups[M.TRANSIT_TIME].mean == pytest.approx(30 * H)
    assert rollups_differing() == []


def test_drilldown_lists_the_orders_behind_a_figure(story):
    missed = drilldown(PERIOD, M.OTIF, missed=True)
    assert [fact.order.number for fact in missed] == ["SO-B"]
    slowest = drilldown(PERIOD, M.TRANSIT_TIME)
    assert [fact.order.number for fact in slowest] == ["SO-B", "SO-A", "SO-C"]
    day = drilldown(PERIOD, M.TRANSIT_TIME, day=date(2026, 11, 4))
    assert [fact.order.number for fact in day] == ["SO-B"]


def test_message_metrics():
    partner = Partner.objects.create(code="EDI1", name="EDI1", kind="carrier")
    received = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)
    ok = InboundMessageFactory(
        partner=partner,
        format="x12",
        status=InboundMessage.Status.PROCESSED,
        processed_at=received + timedelta(seconds=3),
        source_time=received - timedelta(minutes=20),
        events_count=10,
        duplicate_count=2,
        unmapped_count=1,
    )
    dead = InboundMessageFactory(partner=partner, format="x12", status=InboundMessage.Status.DEAD)
    waiting = InboundMessageFactory(partner=partner, format="x12", status=InboundMessage.Status.RECEIVED)
    InboundMessage.objects.filter(pk__in=[ok.pk, dead.pk, waiting.pk]).update(received_at=received)
    OutboundMessageFactory(inbound=ok, kind="997", ack_status="accepted", position=0)
    OutboundMessageFactory(inbound=ok, kind="997", ack_status="rejected", position=1)
    kpis_refresh(message_ids=[ok.pk, dead.pk, waiting.pk])

    tiles = _board().tiles
    assert (tiles[M.FAILED_MESSAGES].hits, tiles[M.FAILED_MESSAGES].count) == (1, 2)  # waiting is not final
    assert tiles[M.APPLY_LAG].mean == pytest.approx(3)
    assert tiles[M.SOURCE_LAG].mean == pytest.approx(20 * 60)
    assert tiles[M.DUPLICATE_EVENTS].rate == pytest.approx(0.2)
    assert tiles[M.UNMAPPED_STATUSES].rate == pytest.approx(0.1)
    assert tiles[M.ACKNOWLEDGED].rate == 0.5
    assert Fact.objects.filter(subject_type="message", detail="x12").exists()


def test_resolution_time_and_open_case_ageing(story):
    now = datetime(2026, 11, 5, 12, 0, tzinfo=UTC)
    resolved = ExceptionCaseFactory(
        queue="finance",
        opened_at=now - timedelta(hours=30),
        due_at=now - timedelta(hours=6),
        status=ExceptionCase.Status.RESOLVED,
        resolved_at=now - timedelta(hours=2),
    )
    ExceptionCaseFactory(queue="finance", opened_at=now - timedelta(hours=2), due_at=now + timedelta(hours=20))
    ExceptionCaseFactory(queue="finance", opened_at=now - timedelta(days=4), due_at=now - timedelta(days=3))
    kpis_refresh(case_ids=[resolved.pk])

    value = _board().tiles[M.RESOLUTION_TIME]
    assert value.mean == pytest.approx(28 * H)
    assert value.rate == 0  # resolved after it was due
    finance = next(row for row in case_ageing(PERIOD, now) if row.queue == "finance")
    assert finance.open == 2
    assert finance.overdue == 1
    assert finance.buckets == [1, 0, 0, 1, 0]  # < 4 h and 3–7 d


def test_incremental_rollups_equal_a_rebuild(story):
    before = rollups_stored()
    assert rollups_differing() == []
    rollups_rebuild()
    assert rollups_stored() == before


def test_percentiles_use_bucket_upper_bounds():
    counts = histogram.of([30, 30, 30, 3 * H])
    assert histogram.percentile(counts, 0.5) == 30
    assert histogram.percentile(counts, 0.95) == 4 * H
    assert histogram.percentile(histogram.empty(), 0.5) is None
    assert histogram.percentile(histogram.of([90 * 86400]), 0.5) == float("inf")


def test_the_kpis_command_checks_and_rebuilds(story):
    out = StringIO()
    call_command("kpis", "check", stdout=out)
    assert "match a recomputation" in out.getvalue()
    Rollup.objects.filter(metric=M.OTIF).delete()
    with pytest.raises(SystemExit):
        call_command("kpis", "check", stdout=StringIO(), stderr=StringIO())
    call_command("kpis", "rebuild", stdout=out)
    assert _board().tiles[M.OTIF].rate == 0.5


def test_refresh_requests_wait_together_for_one_drain(story, django_capture_on_commit_callbacks):
    a, b = (Order.objects.get(number=number) for number in ("SO-A", "SO-B"))
    Fact.objects.all().delete()
    Rollup.objects.all().delete()
    with django_capture_on_commit_callbacks() as queued:  # three messages' requests, no drain run yet
        kpis_refresh_later(order_ids=[a.pk])
        kpis_refresh_later(order_ids=[a.pk, b.pk])
        kpis_refresh_later(order_ids=[b.pk], case_ids=[a.pk])

    assert len(queued) == 3
    assert set(PendingRefresh.objects.values_list("subject_type", "subject_id")) == {
        ("order", a.pk),
        ("order", b.pk),
        ("case", a.pk),
    }
    assert kpis_refresh_pending(chunk=2) == 3  # the first drain refreshes all of them
    assert kpis_refresh_pending() == 0  # the ones queued after it find nothing left
    assert not PendingRefresh.objects.exists()
    assert set(Fact.objects.filter(subject_type="order").values_list("subject_id", flat=True)) == {a.pk, b.pk}
    assert _board().tiles[M.ORDER_TO_SHIP].count == 2


def test_a_committed_request_is_drained_by_the_task(story, django_capture_on_commit_callbacks):
    c = Order.objects.get(number="SO-C")
    Fact.objects.filter(subject_type="order", subject_id=c.pk).delete()
    with django_capture_on_commit_callbacks(execute=True):
        kpis_refresh_later(order_ids=[c.pk])

    assert Fact.objects.filter(subject_type="order", subject_id=c.pk).exists()
    assert not PendingRefresh.objects.exists()


def test_facts_and_rollups_are_written_as_given():
    """Quotes, accents, backslashes, missing partners and a float's last digits survive the
    set-based writes, on insert and on update alike."""
    fact = FactRow(
        M.PICK_TIME, "order", 7, None, date(2026, 11, 2), None, None, "Île \"N\" 'o'", "a\\b", 3, 2, 0.1 + 0.2
    )
    _upsert_facts([fact])
    _upsert_facts([fact._replace(seconds=1 / 3)])
    assert _stored_facts({"order": {7}})[0] == {fact.key: fact._replace(seconds=1 / 3)}

    total = Totals()
    total.add(fact)
    _add_to_rollups({fact.bucket: total})
    _add_to_rollups({fact.bucket: total})
    [(bucket, stored)] = rollups_stored().items()
    assert bucket == fact.bucket
    assert (stored.count, stored.hits, stored.seconds_sum) == (6, 4, 2 * (0.1 + 0.2))
    assert stored.histogram == histogram.of([0.3, 0.3])


@pytest.mark.parametrize("orders", [1, 4])
def test_a_drain_takes_the_same_statements_for_one_subject_or_many(
    story, orders, django_capture_on_commit_callbacks, django_assert_num_queries
):
    """One transaction: the lock, one statement to take the requests, the reads and the writes."""
    order_ids = list(Order.objects.order_by("pk").values_list("pk", flat=True)[:orders])
    Fact.objects.all().delete()
    Rollup.objects.all().delete()
    with django_capture_on_commit_callbacks():
        kpis_refresh_later(order_ids=[*order_ids, order_ids[0]])  # a subject asked for twice waits once

    with django_assert_num_queries(16):
        assert kpis_refresh_pending() == orders

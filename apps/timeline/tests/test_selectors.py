import pytest

from apps.timeline.selectors import Match, find_orders, order_list, order_timeline
from apps.timeline.tests.conftest import create_order, event, ref

pytestmark = pytest.mark.django_db


def numbers(matches):
    return [m.order.number for m in matches]


@pytest.mark.parametrize(
    ("query", "kind", "value"),
    [
        ("SO-100001", "order", "SO-100001"),
        ("po-so-100001", "po", "PO-SO-100001"),
        ("1z 999 aa1 0123456784", "tracking", "1Z999AA10123456784"),
        ("BOL-55", "bol", "BOL-55"),
        ("SH-9001", "shipment", "SH-9001"),
        ("INV-7001", "invoice", "INV-7001"),
    ],
)
def test_find_orders_resolves_every_reference_kind_exactly(story, query, kind, value):
    [match] = find_orders(query)

    assert match.order == story
    assert Match(kind, value, exact=True) in match.matches
    assert match.exact


def test_a_long_prefix_matches_when_nothing_matches_exactly(story):
    [match] = find_orders("1Z999AA1012")

    assert match.order == story
    assert match.matches == (Match("tracking", "1Z999AA10123456784", exact=False),)
    assert not match.exact


def test_a_short_value_never_matches_by_prefix(story):
    assert find_orders("1Z999") == []
    assert find_orders("SO-1") == []


def test_an_exact_match_wins_over_longer_numbers_sharing_its_prefix(partners, apply):
    apply(create_order("SO-200001", 10, promised_hours_ago=-48), create_order("SO-2000011", 9, promised_hours_ago=-48))

    assert numbers(find_orders("SO-200001")) == ["SO-200001"]
    assert numbers(find_orders("SO-20000")) == ["SO-200001", "SO-2000011"]


def test_a_consolidated_shipment_resolves_to_all_its_orders(partners, apply):
    apply(
        create_order("SO-300001", 20, promised_hours_ago=-48),
        create_order("SO-300002", 20, promised_hours_ago=-48),
        event(
            "ship-c",
            "shipment.manifested",
            10,
            ref("shipment", "SH-C1"),
            ref("tracking", "TRK-CONSOL-1"),
            ref("order", "SO-300001"),
            ref("order", "SO-300002"),
        ),
    )

    matches = find_orders("trk-consol-1")

    assert numbers(matches) == ["SO-300001", "SO-300002"]
    assert all(m.matches == (Match("tracking", "TRK-CONSOL-1", exact=True),) for m in matches)


def test_blank_and_unknown_references_find_nothing(story):
    assert find_orders("   ") == []
    assert find_orders("NOPE-123456") == []


def test_find_orders_runs_a_fixed_number_of_queries(partners, apply, django_assert_max_num_queries):
    apply(*(create_order(f"SO-40000{i}", 10, promised_hours_ago=-48) for i in range(8)))

    with django_assert_max_num_queries(10):
        assert len(find_orders("SO-40000")) == 8


def test_timeline_lists_milestones_of_the_order_and_its_shipments_in_time_order(story):
    timeline = order_timeline(story.id)

    assert [m.event_id for m in timeline.milestones] == [
        "SO-100001-created",
        "pick-1",
        "ship-1",
        "ups-transit",
        "ups-eta",
        "inv-1",
    ]
    transit = timeline.milestones[3]
    assert transit.source_partner.code == "UPSN"
    assert transit.source_channel.code == "hook"
    assert transit.references == [{"kind": "tracking", "value": "1Z999AA10123456784"}]


def test_timeline_has_lines_shipments_invoices_and_what_is_late(story):
    timeline = order_timeline(story.id)

    assert [line.sku for line in timeline.lines] == ["SKU-1", "SKU-2"]
    [row] = timeline.shipments
    assert row.shipment.number == "SH-9001"
    assert row.shipment.carrier.code == "UPSN"
    assert row.shipment.warehouse.code == "DCLYON"
    assert row.at_risk
    assert [invoice.number for invoice in timeline.invoices] == ["INV-7001"]
    assert str(timeline.invoiced_amount) == "60.0000"
    assert timeline.late
    assert timeline.at_risk


def test_an_order_delivered_after_its_promise_is_late_and_no_longer_at_risk(story, apply):
    apply(event("ups-dlv", "shipment.delivered", 24, ref("tracking", "1Z999AA10123456784")), partner="UPSN")

    timeline = order_timeline(story.id)

    assert timeline.order.delivered_at is not None
    assert timeline.late
    assert not timeline.at_risk


def test_an_order_delivered_on_time_is_not_late(partners, apply):
    apply(
        create_order("SO-500001", 100, promised_hours_ago=10),
        event("s5", "shipment.manifested", 50, ref("shipment", "SH-5"), ref("order", "SO-500001")),
        event("d5", "shipment.delivered", 20, ref("shipment", "SH-5")),
    )
    order_id = find_orders("SO-500001")[0].order.id

    assert not order_timeline(order_id).late


def test_an_open_order_promised_in_the_future_is_not_late(partners, apply):
    apply(create_order("SO-600001", 10, promised_hours_ago=-72))

    assert not order_timeline(find_orders("SO-600001")[0].order.id).late


def test_order_timeline_of_an_unknown_order_is_none(db):
    assert order_timeline(999_999) is None


def test_order_timeline_query_count_does_not_grow_with_milestones_or_shipments(
    story, apply, django_assert_max_num_queries
):
    with django_assert_max_num_queries(9):
        order_timeline(story.id)
    manifests = [
        event(
            f"s-{i}",
            "shipment.manifested",
            80,
            ref("shipment", f"SH-X{i}"),
            ref("order", "SO-100001"),
            attributes={"carrier": "UPSN"},
        )
        for i in range(5)
    ]
    apply(*manifests, partner="DCLYON", channel="edi")
    scans = [event(f"t-{i}", "shipment.in_transit", 70 - i, ref("shipment", f"SH-X{i % 5}")) for i in range(40)]
    apply(*scans, partner="UPSN", channel="hook")

    with django_assert_max_num_queries(9):
        timeline = order_timeline(story.id)

    assert len(timeline.shipments) == 6
    assert len(timeline.milestones) == 51


def test_order_list_filters_by_stage_and_late(story, partners, apply):
    apply(create_order("SO-700001", 5, promised_hours_ago=-72))

    assert [o.number for o in order_list()] == ["SO-700001", "SO-100001"]
    assert [o.number for o in order_list(late_only=True)] == ["SO-100001"]
    assert [o.number for o in order_list(stage="created")] == ["SO-700001"]

"""Reactions: the apply path calls what settings register, once per unit of work, and imports none of them."""

import ast
import json
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db import transaction

from apps.ingest.models import InboundMessage
from apps.ingest.services import message_process, message_receive
from apps.partners.models import Partner
from apps.timeline.models import Order, Shipment
from apps.timeline.reactions import Phase, Touched, collecting, once_reactions_are_done, reacting_every, reaction
from apps.timeline.services import apply_events
from tests.stories import event, events, manifested, order_created, ref

ROOT = Path(__file__).resolve().parent.parent
CORE = ["services.py", "projections.py", "events.py", "models.py", "tasks.py", "reactions.py", "stages.py"]
REACTING_APPS = (
    "apps.billing",
    "apps.exceptions",
    "apps.dashboards",
    "apps.outbound",
    "apps.ingest",
    "apps.predictions",
)

seen: dict[str, list[Touched]] = {"in": [], "after": []}


@reaction(phase=Phase.IN_TRANSACTION, stage="test")
def record_in_transaction(touched: Touched) -> None:
    seen["in"].append(touched)


@reaction(phase=Phase.AFTER_COMMIT, stage="test")
def record_after_commit(touched: Touched) -> None:
    seen["after"].append(touched)


def unmarked(touched: Touched) -> None:
    """Not a reaction: forgets @reaction."""


@pytest.fixture
def recorded(settings):
    seen["in"].clear()
    seen["after"].clear()
    here = "tests.test_reactions"
    settings.TIMELINE_REACTIONS = [f"{here}.record_in_transaction", f"{here}.record_after_commit"]
    return seen


def test_the_apply_path_imports_none_of_its_reactions():
    for name in CORE:
        tree = ast.parse((ROOT / "apps" / "timeline" / name).read_text())
        modules = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        modules |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
        assert not {m for m in modules if m and m.startswith(REACTING_APPS)}, name


@pytest.mark.django_db(transaction=True)
def test_a_registered_reaction_gets_the_batch_inside_and_after_the_transaction(recorded):
    apply_events(events(order_created("SO-1"), manifested("SH-1", "1Z1", "SO-1")))

    order, shipment = Order.objects.get(), Shipment.objects.get()
    [inside] = recorded["in"]
    assert inside.order_ids == {order.id}
    assert inside.shipment_ids == {shipment.id}
    assert sorted(m.event_id for m in inside.milestones) == ["SH-1-manifested", "SO-1-created"]
    [after] = recorded["after"]
    assert after.order_ids == {order.id}
    assert after.shipment_ids == {shipment.id}


@pytest.mark.django_db(transaction=True)
def test_duplicates_alone_trigger_no_after_commit_reaction(recorded):
    apply_events(events(order_created("SO-1")))
    recorded["after"].clear()
    apply_events(events(order_created("SO-1")))
    assert recorded["after"] == []


@pytest.mark.django_db(transaction=True)
def test_a_collecting_block_reacts_once_for_all_its_applies(recorded):
    with transaction.atomic(), collecting():
        apply_events(events(order_created("SO-1")))
        apply_events(events(order_created("SO-2")))
        assert recorded["after"] == []  # nothing before commit
    assert len(recorded["in"]) == 2
    [after] = recorded["after"]
    assert after.order_ids == set(Order.objects.values_list("id", flat=True))


@pytest.mark.django_db(transaction=True)
def test_nothing_reacts_when_the_transaction_rolls_back(recorded):
    def apply_then_fail() -> None:
        with transaction.atomic(), collecting():
            apply_events(events(order_created("SO-1")))
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        apply_then_fail()
    assert recorded["after"] == []
    assert not Order.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_whole_message_reacts_once_however_many_apply_batches_it_takes(recorded, monkeypatch):
    monkeypatch.setattr("apps.ingest.services.APPLY_BATCH_SIZE", 2)
    partner = Partner.objects.create(code="ERP", name="ERP", kind=Partner.Kind.ERP)
    body = [
        order_created("SO-1"),
        order_created("SO-2"),
        event("rel", "order.released", 1, ref("order", "SO-1")),
        order_created("SO-3"),
        event("cancel", "order.cancelled", 9, ref("order", "SO-2")),
    ]
    payload = json.dumps({"events": body}).encode()
    message, _ = message_receive(body=payload, source="api", partner=partner, format="json", enqueue=False)
    message_process(message.pk)

    assert InboundMessage.objects.get().status == InboundMessage.Status.PROCESSED
    assert len(recorded["in"]) == 3
    [after] = recorded["after"]
    assert after.order_ids == set(Order.objects.values_list("id", flat=True))


@pytest.mark.django_db(transaction=True)
def test_a_bulk_load_reacts_in_rounds_over_what_its_units_of_work_touched(recorded, monkeypatch):
    clock = iter([0.0, 1.0, 6.0, 6.5])
    monkeypatch.setattr("apps.timeline.reactions.monotonic", lambda: next(clock))
    with reacting_every(5) as checkpoint:
        apply_events(events(order_created("SO-1")))
        checkpoint()  # 1 s into the round: it goes on
        apply_events(events(event("rel", "order.released", 1, ref("order", "SO-1")), order_created("SO-2")))
        assert recorded["after"] == []
        checkpoint()  # 6 s: the round ends, with both applies' orders once
        assert [after.order_ids for after in recorded["after"]] == [set(Order.objects.values_list("id", flat=True))]
        apply_events(events(order_created("SO-3")))
    assert [after.order_ids for after in recorded["after"][1:]] == [{Order.objects.get(number="SO-3").id}]


@pytest.mark.django_db(transaction=True)
def test_ingest_sync_over_a_folder_reacts_once_for_orders_spread_over_its_files(recorded, tmp_path):
    Partner.objects.create(code="ERP", name="ERP", kind=Partner.Kind.ERP)
    files = {
        "1.json": [order_created("SO-1"), order_created("SO-2")],
        "2.json": [event("rel", "order.released", 1, ref("order", "SO-1"))],
    }
    for name, body in files.items():
        (tmp_path / name).write_text(json.dumps({"events": body}))

    call_command("ingest", str(tmp_path), partner="ERP", format="json", sync=True, stdout=StringIO())

    assert InboundMessage.objects.filter(status=InboundMessage.Status.PROCESSED).count() == 2
    assert len(recorded["in"]) == 2
    [after] = recorded["after"]
    assert after.order_ids == set(Order.objects.values_list("id", flat=True))


@pytest.mark.django_db(transaction=True)
def test_a_failing_after_commit_reaction_does_not_stop_the_others(settings, caplog):
    seen["after"].clear()
    settings.TIMELINE_REACTIONS = ["tests.test_reactions.explode", "tests.test_reactions.record_after_commit"]
    apply_events(events(order_created("SO-1")))
    assert len(seen["after"]) == 1
    assert "reaction explode failed" in caplog.text


@reaction(phase=Phase.AFTER_COMMIT, stage="test")
def explode(touched: Touched) -> None:
    raise RuntimeError("a reaction broke")


def test_a_function_not_marked_as_reaction_is_refused(settings):
    from apps.timeline.reactions import registered

    settings.TIMELINE_REACTIONS = ["tests.test_reactions.unmarked"]
    with pytest.raises(TypeError, match="not marked with @reaction"):
        registered(Phase.AFTER_COMMIT)


@pytest.mark.django_db(transaction=True)
def test_a_follow_up_asked_for_by_every_unit_of_a_round_runs_once_after_its_reactions(recorded):
    ran: list[str] = []

    def drain() -> None:
        ran.append(f"drain after {len(recorded['after'])} reactions")

    with reacting_every(3600):
        for number in ("SO-1", "SO-2"):
            with transaction.atomic():
                apply_events(events(order_created(number)))
                once_reactions_are_done(drain, stage="test")
        once_reactions_are_done(drain, stage="test")
        assert ran == []
    assert ran == ["drain after 1 reactions"]


@pytest.mark.django_db(transaction=True)
def test_a_follow_up_runs_even_when_the_round_touched_nothing(recorded):
    ran: list[str] = []
    with reacting_every(3600):
        once_reactions_are_done(lambda: ran.append("drain"), stage="test")
    assert ran == ["drain"]
    assert recorded["after"] == []


@pytest.mark.django_db(transaction=True)
def test_outside_a_round_a_follow_up_waits_for_the_commit():
    ran: list[str] = []
    with transaction.atomic():
        once_reactions_are_done(lambda: ran.append("drain"), stage="test")
        assert ran == []
    assert ran == ["drain"]


@pytest.mark.django_db(transaction=True)
def test_ingest_sync_drains_the_kpi_requests_of_a_whole_round_once(tmp_path, monkeypatch):
    from apps.dashboards import services as dashboards
    from apps.dashboards.models import Fact, PendingRefresh

    drains: list[int] = []
    drain = dashboards._queue_drain
    monkeypatch.setattr(dashboards, "_queue_drain", lambda: drains.append(1) or drain())
    Partner.objects.create(code="ERP", name="ERP", kind=Partner.Kind.ERP)
    files = {
        "1.json": [order_created("SO-1"), order_created("SO-2")],
        "2.json": [event("rel", "order.released", 1, ref("order", "SO-1"))],
        "3.json": [event("rel", "order.released", 1, ref("order", "SO-1"))],  # duplicates only
    }
    for name, body in files.items():
        (tmp_path / name).write_text(json.dumps({"events": body}))

    call_command("ingest", str(tmp_path), partner="ERP", format="json", sync=True, stdout=StringIO())

    assert drains == [1]
    # The one drain refreshed every message and order the round asked for.
    assert not PendingRefresh.objects.exists()
    assert set(Fact.objects.filter(subject_type="message").values_list("subject_id", flat=True)) == set(
        InboundMessage.objects.values_list("id", flat=True)
    )

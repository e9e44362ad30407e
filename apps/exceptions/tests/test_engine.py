import asyncio
from datetime import timedelta

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.utils import timezone

from apps.exceptions.models import CaseEvent, ExceptionCase, ExceptionRule
from apps.exceptions.realtime import queue_group
from apps.exceptions.services import builtin_rules_ensure, cases_close, detect
from apps.timeline.events import parse_events
from apps.timeline.models import Order
from apps.timeline.services import apply_events

pytestmark = pytest.mark.django_db


def _event(event_id: str, kind: str, hours_ago: float, *refs: tuple[str, str]) -> dict:
    return {
        "event_id": event_id,
        "kind": kind,
        "occurred_at": (timezone.now() - timedelta(hours=hours_ago)).isoformat(),
        "references": [{"kind": k, "value": v} for k, v in refs],
    }


@pytest.fixture
def rules():
    builtin_rules_ensure()
    return {rule.code: rule for rule in ExceptionRule.objects.all()}


def test_every_built_in_rule_exists_once(rules):
    assert builtin_rules_ensure() == 0
    assert len(rules) == 18


def test_a_case_opens_once_and_closes_itself_when_the_condition_clears(rules):
    apply_events(
        parse_events(
            [
                _event("c", "order.created", 50, ("order", "SO-1")),
                _event("r", "order.released", 30, ("order", "SO-1")),
            ]
        )
    )
    first = detect()
    again = detect()

    [case] = ExceptionCase.objects.filter(rule__code="released_not_picked")
    assert first.opened == [case.pk]
    assert again.opened == []
    assert case.queue == "supply_chain"
    assert case.due_at == case.opened_at + rules["released_not_picked"].sla

    result = apply_events(parse_events([_event("p", "order.picked", 1, ("order", "SO-1"))]))
    closed = detect(order_ids=result.order_ids)

    case.refresh_from_db()
    assert closed.closed == [case.pk]
    assert (case.status, case.resolution) == ("resolved", "auto")
    assert list(case.history.values_list("action", flat=True)) == ["opened", "auto_closed"]


def test_closing_by_hand_needs_a_reason_and_is_audited(rules, django_user_model):
    apply_events(
        parse_events(
            [_event("c", "order.created", 50, ("order", "SO-1")), _event("r", "order.released", 30, ("order", "SO-1"))]
        )
    )
    detect()
    user = django_user_model.objects.create_user("planner")
    cases = ExceptionCase.objects.all()
    assert cases_close(cases=cases, actor=user, dismiss=True, reason_code="not_an_issue", note="Pre-order") == 1
    case = cases.get()
    assert (case.status, case.resolution) == ("dismissed", "not_an_issue")
    event = case.history.get(action=CaseEvent.Action.DISMISSED)
    assert (event.actor, event.note) == (user, "Pre-order")


@pytest.mark.parametrize("after_an_apply", [False, True], ids=["sweep", "after an apply"])
def test_a_case_closed_by_hand_is_not_reopened_while_its_condition_lasts(rules, django_user_model, after_an_apply):
    apply_events(
        parse_events(
            [_event("c", "order.created", 50, ("order", "SO-1")), _event("r", "order.released", 30, ("order", "SO-1"))]
        )
    )
    detect()
    user = django_user_model.objects.create_user("planner")
    cases_close(cases=ExceptionCase.objects.all(), actor=user, dismiss=True, reason_code="not_an_issue")

    scope = {"order_ids": [Order.objects.get().id]} if after_an_apply else {}
    assert detect(**scope).opened == []
    assert ExceptionCase.objects.count() == 1


def test_a_rule_left_in_the_table_without_its_detector_does_not_stop_detection(rules):
    """A built-in rule retired from the code keeps its row (and its cases) until someone deletes it."""
    ExceptionRule.objects.create(code="retired_rule", title="Retired", queue="supply_chain")
    apply_events(
        parse_events(
            [_event("c", "order.created", 50, ("order", "SO-1")), _event("r", "order.released", 30, ("order", "SO-1"))]
        )
    )
    assert len(detect().opened) == 1


def test_detection_tells_the_open_queue_pages_once_it_commits(rules, django_capture_on_commit_callbacks):
    layer = get_channel_layer()
    page = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(queue_group("supply_chain"), page)
    apply_events(
        parse_events(
            [_event("c", "order.created", 50, ("order", "SO-1")), _event("r", "order.released", 30, ("order", "SO-1"))]
        )
    )

    with django_capture_on_commit_callbacks(execute=True):
        detect()

    async def pushed() -> dict:
        return await asyncio.wait_for(layer.receive(page), timeout=5)

    assert async_to_sync(pushed)() == {"type": "cases.changed", "queue": "supply_chain"}

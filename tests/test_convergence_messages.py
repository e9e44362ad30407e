"""Convergence through the workers' path: the same history sent as many small messages, processed
in micro-batches in any order with reactions after each unit of work, ends in the state (timeline
and open exception cases) that applying it at once gives; and an invoice rule invoices once.

An invoice a rule makes is an action, not a projection: it is made when its condition first holds,
so a history that meets the condition half way invoices there. Only "at most once" is compared.
"""

import json
from datetime import timedelta
from typing import Any

import pytest
import time_machine
from hypothesis import given, settings
from hypothesis import strategies as st

from apps.billing.models import InvoiceRule
from apps.billing.services import RULE_PREFIX
from apps.exceptions.models import ExceptionCase
from apps.ingest.models import InboundMessage
from apps.ingest.services import message_process, message_receive
from apps.partners.models import Partner
from apps.timeline.events import parse_events
from apps.timeline.models import Milestone
from apps.timeline.services import apply_events
from tests.snapshot import snapshot
from tests.test_convergence import T0, _partners, histories, rolled_back

pytestmark = pytest.mark.django_db

NOW = T0 + timedelta(days=30)
# Each example runs the whole pipeline twice, reactions included: fewer examples than the
# timeline-only property test, the same generator.
EXAMPLES = 60


def _state() -> dict[str, Any]:
    """What a user sees, with the open cases by rule and subject."""
    cases = ExceptionCase.objects.filter(status__in=ExceptionCase.OPEN_STATUSES)
    return {
        **snapshot(),
        "open_cases": sorted(
            cases.values_list("rule__code", "subject_type", "order__number", "shipment__number").distinct()
        ),
        "open_case_count": cases.count(),
    }


def _process_as_messages(stream: list[dict[str, Any]], data: st.DataObject, capture: Any) -> None:
    """Store ``stream`` as messages of one to three events, then run their tasks in a drawn order,
    each taking a drawn number of companions, with the reactions after each unit of work."""
    feed = Partner.objects.get(code="FEED")
    sizes = data.draw(st.lists(st.integers(1, 3), min_size=len(stream), max_size=len(stream)), label="sizes")
    start, ids = 0, []
    for size in sizes:
        chunk = stream[start : start + size]
        start += size
        if chunk:
            body = json.dumps({"events": chunk}).encode()
            # The feed is a hub relaying every partner's events: scopes are tested in test_scopes.
            message, _ = message_receive(
                body=body, source="api", partner=feed, format="json", enqueue=False, scopes=["relay"]
            )
            ids.append(message.pk)
    for pk in data.draw(st.permutations(ids), label="task order"):
        with capture(execute=True):
            message_process(pk, companions=data.draw(st.integers(0, 3), label="companions"))
    assert not InboundMessage.objects.filter(status=InboundMessage.Status.RECEIVED).exists()


def _arrivals(history: list[dict[str, Any]], data: st.DataObject) -> list[dict[str, Any]]:
    stream = data.draw(st.permutations(history), label="arrival order")
    return stream + (data.draw(st.lists(st.sampled_from(history), max_size=3), label="resends") if history else [])


def _setup() -> None:
    _partners()
    # A hub relaying the warehouses' stock feeds too: not an ERP, whose stock figures are book stock.
    Partner.objects.create(code="FEED", name="Feed", kind=Partner.Kind.TMS)


@settings(max_examples=EXAMPLES)
@given(history=histories(), data=st.data())
def test_small_messages_in_micro_batches_give_the_state_of_one_apply(history, data, django_capture_on_commit_callbacks):
    with time_machine.travel(NOW, tick=False), rolled_back():
        _setup()
        with rolled_back():
            with django_capture_on_commit_callbacks(execute=True):
                apply_events(parse_events(history))
            expected = _state()
        with rolled_back():
            _process_as_messages(_arrivals(history, data), data, django_capture_on_commit_callbacks)
            actual = _state()

    assert actual == expected
    assert actual["open_case_count"] == len(actual["open_cases"])  # one open case per (rule, subject)


@settings(max_examples=EXAMPLES)
@given(history=histories(), data=st.data())
def test_an_invoice_rule_invoices_at_most_once_through_micro_batches(history, data, django_capture_on_commit_callbacks):
    with time_machine.travel(NOW, tick=False), rolled_back():
        _setup()
        for code in ("ACME", "GLOBEX"):
            InvoiceRule.objects.create(
                customer=Partner.objects.get(code=code),
                trigger=InvoiceRule.Trigger.SHIP_CONFIRMATION,
                granularity=InvoiceRule.Granularity.PER_SHIPMENT,
            )
        _process_as_messages(_arrivals(history, data), data, django_capture_on_commit_callbacks)
        made = Milestone.objects.filter(kind="invoice.generated", event_id__startswith=RULE_PREFIX)
        numbers = [
            ref["value"]
            for refs in made.values_list("references", flat=True)
            for ref in refs
            if ref["kind"] == "invoice"
        ]

    assert len(numbers) == len(set(numbers))

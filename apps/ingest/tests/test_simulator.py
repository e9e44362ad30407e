"""The feed simulator: its documents parse, and its stream through the real receivers converges."""

import hashlib
import io
import socket

import pytest
from django.core.cache import cache
from django.core.management import CommandError, call_command
from django.db.models import F
from rest_framework.test import APIClient

from apps.ingest import simulator
from apps.ingest.models import InboundMessage
from apps.ingest.parsers import ParseContext, ParseError, get_parser
from apps.inventory.models import InventoryPosition
from apps.timeline.models import Milestone, MilestoneReport, Order, ParkedEvent, ParkedReference, Reference, Shipment

MALFORMED = {"truncated_x12", "broken_json"}
PLANS = {(plan.partner, plan.code): plan for plan in simulator.CHANNELS}
ZONES = {spec.code: spec.time_zone for spec in simulator.PARTNERS}
S = InboundMessage.Status


@pytest.fixture(autouse=True)
def _inbox_and_fresh_signatures(settings, tmp_path):
    settings.INBOX_DIR = tmp_path / "inbox"
    cache.clear()  # webhook signatures seen by earlier tests


def context(message: simulator.SimMessage) -> ParseContext:
    plan = PLANS[(message.partner, message.channel)]
    return ParseContext(
        partner=message.partner, channel=message.channel, mapping=plan.mapping, time_zone=ZONES[message.partner]
    )


def test_a_stream_is_a_function_of_its_arguments_and_five_to_twelve_percent_is_faulty():
    messages = simulator.generate(7, 30)
    assert messages == simulator.generate(7, 30)
    assert messages != simulator.generate(8, 30)
    assert 0.05 <= sum(1 for m in messages if m.fault) / len(messages) <= 0.12
    summary = simulator.stream_summary(messages)
    assert {"ERP/json", "DC-ATL/x12", "DC-RTM/edifact", "RDLN/x12", "SWPX/easypost", "NRDL/edifact", "EUPL/csv"} <= set(
        summary["formats"]
    )
    assert {"duplicate", "reordered", "late_event", "unknown_reference", "truncated_x12", "broken_json"} <= set(
        summary["faults"]
    )
    assert not any(m.fault for m in simulator.generate(7, 30, faults=False))


def test_every_well_formed_body_parses_cleanly_with_its_parser_and_malformed_ones_are_refused():
    messages = simulator.generate(3, 40)
    for message in messages:
        parser = get_parser(message.format)
        if message.fault in MALFORMED:
            with pytest.raises(ParseError):
                parser.parse(message.body, context(message))
            continue
        document = parser.parse(message.body, context(message))
        assert document.events, message.body
        problems = (document.warnings, document.unsupported, document.unmapped_codes)
        assert problems == ([], [], []), message.body


def test_x12_documents_name_a_sender_that_identifies_the_partner():
    messages = [m for m in simulator.generate(5, 20, faults=False) if m.format == "x12"]
    senders = {(m.partner, get_parser("x12").sender_ids(m.body)[0]) for m in messages}
    assert senders == {("DC-ATL", ("ZZ", "CTATLWMS")), ("RDLN", ("02", "RDLN"))}


@pytest.mark.django_db(transaction=True)
def test_setup_is_idempotent_and_hands_out_new_tokens():
    first = simulator.simulation_setup()
    second = simulator.simulation_setup()
    assert set(first.tokens) == {"DC-ATL", "ERP", "EUPL", "NRDL"}
    assert first.tokens["ERP"] != second.tokens["ERP"]
    assert first.secrets == second.secrets == {("SWPX", "tracking-hook"): first.secrets[("SWPX", "tracking-hook")]}


@pytest.mark.django_db(transaction=True)
def test_a_30_order_stream_through_the_receivers_tells_every_story_and_fails_visibly():
    simulation = simulator.simulation_setup()
    messages = simulator.generate(11, 30)
    tally = simulator.send_in_process(messages, APIClient(), simulation)

    stages = set(Order.objects.values_list("stage", flat=True))
    assert {"created", "released", "shipped", "delivered", "invoiced"} <= stages, stages
    assert Order.objects.count() == 30
    assert Shipment.objects.filter(status="delivered").count() >= 10

    malformed = {hashlib.sha256(m.body).hexdigest() for m in messages if m.fault in MALFORMED}
    dead = list(InboundMessage.objects.filter(status__in=[S.DEAD, S.FAILED]))
    assert dead
    assert all(message.error and message.sha256 in malformed for message in dead)
    assert set(InboundMessage.objects.values_list("status", flat=True)) == {S.PROCESSED, S.DEAD}

    parked = set(ParkedReference.objects.values_list("value", flat=True))
    assert ParkedEvent.objects.exists()
    assert not Reference.objects.filter(value__in=parked).exists()  # what stays parked names nothing of ours

    answers = dict(zip(messages, tally.answers, strict=True))
    assert all(answers[m] == "duplicate" for m in messages if m.fault == "duplicate")
    refused = [answers[m] for m in messages if m.fault == "broken_json" and m.route == simulator.API_EVENTS]
    assert refused
    assert all(answer.startswith("refused: 400") for answer in refused)
    assert tally.stored + tally.duplicates + sum(tally.refused.values()) == len(messages)

    late = InboundMessage.objects.filter(
        sha256__in={hashlib.sha256(m.body).hexdigest() for m in messages if m.fault == "late_event"}
    )
    shipments = Milestone.objects.filter(source_message_id__in=late.values("pk")).values("shipment_id")
    assert Shipment.objects.filter(pk__in=shipments).exists()
    assert set(Shipment.objects.filter(pk__in=shipments).values_list("status", flat=True)) == {"delivered"}

    # DC-ATL counts its stock, the ERP books it: it books out on invoicing, after the shipment.
    stock = InventoryPosition.objects.filter(warehouse__code="DC-ATL", quantity__isnull=False)
    assert stock.filter(book_quantity__isnull=False).exists()
    assert stock.filter(quantity__lt=F("book_quantity")).exists()
    assert not stock.filter(quantity__gt=F("book_quantity")).exists()


def _state() -> dict[str, object]:
    return {
        "messages": InboundMessage.objects.count(),
        "milestones": sorted(Milestone.objects.values_list("event_id", flat=True)),
        "reports": MilestoneReport.objects.count(),
        "parked": ParkedEvent.objects.count(),
        "orders": sorted(Order.objects.values_list("number", "stage")),
        "shipments": sorted(Shipment.objects.values_list("number", "status")),
    }


@pytest.mark.django_db(transaction=True)
def test_the_same_stream_sent_twice_changes_nothing_the_second_time():
    simulation = simulator.simulation_setup()
    messages = simulator.generate(13, 12)
    simulator.send_in_process(messages, APIClient(), simulation)
    before = _state()

    again = simulator.send_in_process(messages, APIClient(), simulation)

    assert _state() == before
    assert again.stored == 0
    assert all(reason.startswith("400 ") for reason in again.refused)


@pytest.mark.django_db(transaction=True)
def test_simulate_once_sends_a_round_to_a_live_server(live_server, settings):
    out = io.StringIO()
    call_command(
        "simulate",
        "--once",
        "--rate=1000",
        "--orders-per-batch=4",
        "--seed=21",
        f"--base-url={live_server.url}",
        stdout=out,
    )
    assert "round 21 (" in out.getvalue()
    assert ": sent " in out.getvalue()
    assert InboundMessage.objects.filter(source="api").exists()
    assert InboundMessage.objects.filter(source="file").exists()
    assert Order.objects.filter(number__startswith="SO-21-").count() == 4


@pytest.mark.parametrize("url", ["http://example.com:8000", "http://10.0.0.5", "ftp://127.0.0.1"])
def test_simulate_refuses_a_remote_or_odd_base_url(url):
    with pytest.raises(CommandError):
        call_command("simulate", "--once", f"--base-url={url}")


def test_a_refused_connection_is_retried_a_bounded_number_of_times(monkeypatch):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    calls = []
    real_post = simulator._post
    monkeypatch.setattr(simulator, "RETRY_DELAY", 0)
    monkeypatch.setattr(simulator, "_post", lambda *args: calls.append(1) or real_post(*args))
    message = next(m for m in simulator.generate(1, 1) if m.route == simulator.API_EVENTS)
    simulation = simulator.Simulation(tokens={"ERP": "ct_x_y"}, secrets={})

    tally = simulator.send_http([message], f"http://127.0.0.1:{port}", simulation, rate=1000)

    assert len(calls) == simulator.RETRIES + 1
    assert tally.sent == 1
    assert next(iter(tally.refused)).startswith("0 unreachable")

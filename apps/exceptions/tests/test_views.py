import csv
import io
import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from apps.exceptions.models import CaseEvent, ExceptionCase, ExceptionRule
from apps.exceptions.roles import roles_ensure
from apps.exceptions.selectors import open_counts
from apps.partners.models import Partner
from apps.timeline.models import Order, Shipment

pytestmark = pytest.mark.django_db
NOW = timezone.now()
HTMX = {"HTTP_HX_REQUEST": "true"}


def text(response) -> str:
    return re.sub(r"\s+", " ", response.content.decode())


@pytest.fixture
def rules() -> dict[str, ExceptionRule]:
    specs = [
        ("late_against_promise", "Late against the promised date", "customer_service"),
        ("delivered_not_invoiced", "Delivered, not invoiced", "finance"),
        ("invoice_held", "Invoice held", "finance"),
        ("released_not_picked", "Released, not picked", "supply_chain"),
        ("dead_letter", "Dead-lettered message", "integration"),
    ]
    return {code: ExceptionRule.objects.create(code=code, title=title, queue=queue) for code, title, queue in specs}


@pytest.fixture
def partners() -> dict[str, Partner]:
    return {
        "ACME": Partner.objects.create(code="ACME", name="Acme Retail", kind=Partner.Kind.CUSTOMER),
        "BETA": Partner.objects.create(code="BETA", name="Beta Stores", kind=Partner.Kind.CUSTOMER),
        "UPSN": Partner.objects.create(code="UPSN", name="UPS", kind=Partner.Kind.CARRIER),
    }


def make_case(rule: ExceptionRule, number: str, *, hours_ago: float = 10, **fields) -> ExceptionCase:
    order = fields.pop("order", None) or Order.objects.create(
        number=number, customer=fields.get("customer"), region=fields.get("region", "")
    )
    opened = NOW - timedelta(hours=hours_ago)
    defaults = {
        "queue": rule.queue,
        "severity": rule.severity,
        "subject_type": "order",
        "subject_id": order.pk,
        "order": order,
        "summary": f"{rule.title}: {number}",
        "opened_at": opened,
        "due_at": opened + timedelta(hours=24),
        "currency": "EUR",
    }
    case = ExceptionCase.objects.create(rule=rule, **{**defaults, **fields})
    CaseEvent.objects.create(case=case, at=opened, action=CaseEvent.Action.OPENED)
    return case


@pytest.fixture
def user(django_user_model):
    """Someone in every role, so every queue is theirs to work (the role matrix has its own tests)."""
    agent = django_user_model.objects.create_user(username="agent")
    agent.groups.set(roles_ensure().values())
    return agent


@pytest.fixture
def agent(client, user):
    client.force_login(user)
    return client


@pytest.fixture
def cases(rules, partners) -> dict[str, ExceptionCase]:
    """Two finance cases, one of each other queue."""
    return {
        "uninvoiced": make_case(
            rules["delivered_not_invoiced"],
            "SO-1",
            hours_ago=30,
            customer=partners["ACME"],
            partner=partners["UPSN"],
            region="EU-West",
            amount_at_risk=Decimal("120.00"),
        ),
        "held": make_case(
            rules["invoice_held"],
            "SO-2",
            hours_ago=5,
            customer=partners["BETA"],
            region="US-East",
            amount_at_risk=Decimal("900.00"),
        ),
        "late": make_case(rules["late_against_promise"], "SO-3", customer=partners["ACME"]),
        "unpicked": make_case(rules["released_not_picked"], "SO-4"),
        "dead": make_case(rules["dead_letter"], "MSG-5"),
    }


def listed(response) -> list[int]:
    return [int(pk) for pk in re.findall(r'<tr id="case-(\d+)"', response.content.decode())]


# --- access -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url", ["/queues/", "/queues/finance/", "/queues/mine/", "/queues/finance/export.csv", "/cases/1/"]
)
def test_pages_need_a_login(client, url):
    response = client.get(url)

    assert response.status_code == 302
    assert response.url.startswith(reverse("login"))


def test_actions_need_a_login(client, cases):
    response = client.post("/cases/actions/", {"case": cases["held"].pk, "action": "acknowledge"})

    assert response.status_code == 302
    assert response.url.startswith(reverse("login"))
    assert ExceptionCase.objects.get(pk=cases["held"].pk).status == "open"


def test_an_unknown_queue_is_not_found(agent):
    assert agent.get("/queues/sales/").status_code == 404


# --- lists ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("queue", "names"),
    [
        ("finance", ["uninvoiced", "held"]),
        ("customer_service", ["late"]),
        ("supply_chain", ["unpicked"]),
        ("integration", ["dead"]),
    ],
)
def test_each_queue_lists_only_its_open_cases_oldest_first(agent, cases, queue, names):
    response = agent.get(f"/queues/{queue}/")

    assert response.status_code == 200
    assert listed(response) == [cases[name].pk for name in names]


def test_a_row_shows_what_the_case_is_about(agent, cases):
    case = cases["uninvoiced"]
    ExceptionCase.objects.filter(pk=case.pk).update(due_at=NOW - timedelta(hours=6))

    body = text(agent.get("/queues/finance/"))

    assert "Delivered, not invoiced" in body
    assert "Delivered, not invoiced: SO-1" in body
    assert f'href="{reverse("order-detail", args=[case.order_id])}">SO-1</a>' in body
    assert "Acme Retail" in body
    assert "UPS" in body
    assert "EU-West" in body
    assert "120.00 EUR" in body
    assert "1 day, 6 hours" in body  # age
    assert "Overdue</span>" in body  # said in words, not only in colour
    assert "Nobody" in body
    assert "Open" in body


def test_closed_cases_are_hidden_unless_asked_for(agent, cases, user):
    held = cases["held"]
    ExceptionCase.objects.filter(pk=held.pk).update(status="resolved", resolved_at=NOW)

    assert listed(agent.get("/queues/finance/")) == [cases["uninvoiced"].pk]
    assert listed(agent.get("/queues/finance/", {"status": "resolved"})) == [held.pk]
    assert listed(agent.get("/queues/finance/", {"status": ["resolved", "open"]})) == [
        cases["uninvoiced"].pk,
        held.pk,
    ]


@pytest.mark.parametrize(
    ("params", "names"),
    [
        ({"q": "SO-2"}, ["held"]),
        ({"q": "not invoiced"}, ["uninvoiced"]),
        ({"region": "us-east"}, ["held"]),
        ({"age": "24"}, ["uninvoiced"]),
        ({"min_amount": "500"}, ["held"]),
        ({"sort": "amount"}, ["held", "uninvoiced"]),
        ({"sort": "age"}, ["uninvoiced", "held"]),
    ],
)
def test_filters_and_sorts(agent, cases, params, names):
    assert listed(agent.get("/queues/finance/", params)) == [cases[name].pk for name in names]


def test_filters_by_rule_partner_and_customer(agent, cases, rules, partners):
    by_rule = agent.get("/queues/finance/", {"rule": rules["invoice_held"].pk})
    by_partner = agent.get("/queues/finance/", {"partner": partners["UPSN"].pk})
    by_customer = agent.get("/queues/finance/", {"customer": "BETA"})

    assert listed(by_rule) == [cases["held"].pk]
    assert listed(by_partner) == [cases["uninvoiced"].pk]
    assert listed(by_customer) == [cases["held"].pk]


@pytest.mark.parametrize("typed", ["BETA", "beta", "Beta Stores", "beta stores"])
def test_a_customer_is_typed_by_code_or_name(agent, cases, typed):
    assert listed(agent.get("/queues/finance/", {"customer": typed})) == [cases["held"].pk]


def test_an_unknown_customer_is_said_so(agent, cases):
    response = agent.get("/queues/finance/", {"customer": "NOBODY"})

    assert "No customer has this code or name." in text(response)


def test_the_filters_do_not_list_every_customer(agent, cases):
    Partner.objects.create(code="GAMMA", name="Gamma Goods", kind=Partner.Kind.CUSTOMER)

    assert "Gamma Goods" not in text(agent.get("/queues/finance/"))


def test_my_cases_span_every_queue(agent, cases, user):
    ExceptionCase.objects.filter(pk__in=[cases["late"].pk, cases["held"].pk]).update(assignee=user)

    response = agent.get("/queues/mine/")

    assert sorted(listed(response)) == sorted([cases["late"].pk, cases["held"].pk])
    assert "My cases" in text(response)


def link(response, rel: str) -> dict[str, str]:
    """The query of the page's ``rel`` (next, prev) link."""
    found = re.search(rf'<a href="\?([^"]*)" rel="{rel}">', response.content.decode())
    assert found, f"no {rel} link"
    return dict(pair.split("=", 1) for pair in found.group(1).replace("&amp;", "&").split("&"))


def test_the_queue_page_is_paginated_by_fifty_with_next_and_previous_links(agent, rules):
    made = [make_case(rules["invoice_held"], f"SO-P{i:03}", hours_ago=100 - i).pk for i in range(55)]

    first = agent.get("/queues/finance/")
    second = agent.get("/queues/finance/", link(first, "next"))
    back = agent.get("/queues/finance/", link(second, "prev"))

    assert listed(first) == made[:50]
    assert listed(second) == made[50:]
    assert listed(back) == made[:50]
    assert "55 cases" in text(first)
    assert "55 cases" in text(second)
    assert 'rel="next"' not in text(second)
    assert 'rel="prev"' not in text(first)


def test_pages_sorted_by_amount_walk_every_case_once_those_without_an_amount_last(agent, rules):
    amounts = [None, "10", "250", None, "10", "99.5", None, "250"] * 8
    made = [
        make_case(rules["invoice_held"], f"SO-A{i:03}", hours_ago=200 - i, amount_at_risk=amount, currency="EUR")
        for i, amount in enumerate(amounts)
    ]
    amount = {case.pk: Decimal(case.amount_at_risk) if case.amount_at_risk else None for case in made}
    expected = sorted(made, key=lambda c: (amount[c.pk] is None, -(amount[c.pk] or 0), c.opened_at, c.pk))

    first = agent.get("/queues/finance/", {"sort": "amount"})
    second = agent.get("/queues/finance/", link(first, "next"))

    assert listed(first) + listed(second) == [case.pk for case in expected]
    assert listed(agent.get("/queues/finance/", link(second, "prev"))) == listed(first)


@pytest.mark.parametrize("cursor", ["not-base64!", "W10", "WyJ4IiwgMV0", "WyJub3QgYSBkYXRlIiwiMSJd", "A" * 2000])
def test_a_cursor_that_cannot_be_read_shows_the_first_page(agent, rules, cursor):
    made = [make_case(rules["invoice_held"], f"SO-C{i:03}", hours_ago=60 - i).pk for i in range(3)]

    for direction in ("after", "before"):
        response = agent.get("/queues/finance/", {direction: cursor})
        assert response.status_code == 200
        assert listed(response) == made


def test_page_query_count_is_flat(agent, user, rules, partners, django_assert_max_num_queries):
    def count() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert agent.get("/queues/finance/").status_code == 200
        return len(queries)

    for i in range(5):
        make_case(rules["invoice_held"], f"SO-A{i}", customer=partners["ACME"], partner=partners["UPSN"])
    few = count()
    for i in range(30):
        make_case(rules["invoice_held"], f"SO-B{i}", customer=partners["BETA"], partner=partners["UPSN"], assignee=user)
    for i in range(5):  # rows naming a shipment, not an order
        shipment = Shipment.objects.create(number=f"SH-C{i}")
        make_case(rules["invoice_held"], f"SO-C{i}", subject_type="shipment", subject_id=shipment.pk, shipment=shipment)
    ExceptionCase.objects.filter(shipment__isnull=False).update(order=None)

    with django_assert_max_num_queries(few):
        agent.get("/queues/finance/")
    with django_assert_max_num_queries(few + 1):  # the export reads in chunks
        export = b"".join(agent.get("/queues/finance/export.csv").streaming_content).decode()
    assert export.count("\n") == 41
    assert few <= 12


def test_the_live_refresh_gets_the_list_and_the_counters(agent, cases):
    response = agent.get("/queues/finance/", **HTMX)

    body = text(response)
    assert body.lstrip().startswith('<div id="queue-list">')
    assert 'id="nav-queues" hx-swap-oob="true"' in body
    assert 'id="queue-tabs" aria-label="Queues" hx-swap-oob="true"' in body


# --- navigation counts ------------------------------------------------------------------------


def test_nav_shows_open_counts_per_queue(agent, cases, user):
    ExceptionCase.objects.filter(pk=cases["dead"].pk).update(status="dismissed")
    ExceptionCase.objects.filter(pk=cases["late"].pk).update(assignee=user)

    body = text(agent.get("/orders/"))

    nav = body[body.index('id="nav-queues"') : body.index("</details>")]
    assert "Queues" in nav
    assert re.search(r"Finance <span class=\"count\">2<", nav)
    assert re.search(r"Customer service <span class=\"count\">1<", nav)
    assert re.search(r"Integration <span class=\"count\">0<", nav)
    assert re.search(r"My cases <span class=\"count\">1<", nav)
    assert re.search(r'Queues <span class="count" title="open cases">4<', nav)


def test_nav_counts_take_one_query(cases, user, django_assert_num_queries):
    with django_assert_num_queries(1):
        counts = open_counts(user=user)

    assert counts == {"customer_service": 1, "finance": 2, "supply_chain": 1, "integration": 1, "mine": 0}


def test_nav_counts_cost_one_query_per_page_whatever_the_cases(agent, rules):
    def count() -> int:
        with CaptureQueriesContext(connection) as queries:
            agent.get("/orders/")
        return len(queries)

    make_case(rules["invoice_held"], "SO-N")
    one = count()
    for i in range(20):
        make_case(rules["invoice_held" if i % 2 else "dead_letter"], f"SO-N{i}")

    assert count() == one


# --- expanding a row --------------------------------------------------------------------------


def test_expanding_a_row_shows_the_order_timeline_and_the_history(agent, cases, user):
    from apps.timeline.events import parse_events
    from apps.timeline.services import apply_events

    apply_events(
        parse_events(
            [
                {
                    "event_id": f"e{i}",
                    "kind": kind,
                    "occurred_at": (NOW - timedelta(hours=50 - i)).isoformat(),
                    "references": [{"kind": "order", "value": "SO-1"}],
                }
                for i, kind in enumerate(
                    [
                        "order.created",
                        "order.released",
                        "order.allocated",
                        "order.picked",
                        "order.packed",
                        "order.cancelled",
                    ]
                )
            ]
        )
    )
    case = cases["uninvoiced"]
    CaseEvent.objects.create(case=case, at=NOW, actor=user, action="commented", note="Called the carrier.")

    response = agent.get(f"/cases/{case.pk}/", **HTMX)

    body = text(response)
    assert response.status_code == 200
    assert "<html" not in body
    assert "Order <a" in body
    assert "SO-1" in body
    assert "Cancelled" in body  # the stage
    assert "Order cancelled" in body
    assert "Released to warehouse" in body
    assert "Order created" not in body  # only the last five milestones
    assert "Called the carrier." in body
    assert "Commented</strong> by agent" in body
    assert "Opened</strong> by the system" in body
    assert 'name="reason_code"' in body


def test_a_case_page_without_htmx_is_a_whole_page(agent, cases):
    response = agent.get(f"/cases/{cases['dead'].pk}/")

    assert "<html" in text(response)
    assert agent.get("/cases/999999/").status_code == 404


# --- actions ------------------------------------------------------------------------------------


def act(client, case_ids, action, **fields):
    ids = case_ids if isinstance(case_ids, list) else [case_ids]
    return client.post("/cases/actions/", {"case": ids, "action": action, "queue": "finance", **fields}, **HTMX)


def test_assign_to_me(agent, cases, user):
    case = cases["held"]

    response = act(agent, case.pk, "assign_to_me")

    case.refresh_from_db()
    assert case.assignee == user
    assert case.history.filter(action="assigned", actor=user, note="to agent").exists()
    body = text(response)
    assert "Assigned to you 1 case." in body
    assert f'<tr id="case-{case.pk}" class="case-row" hx-swap-oob="true">' in body
    assert 'id="nav-queues" hx-swap-oob="true"' in body


def test_acknowledge(agent, cases, user):
    case = cases["held"]

    act(agent, case.pk, "acknowledge")

    case.refresh_from_db()
    assert case.status == "acknowledged"
    assert case.history.filter(action="acknowledged", actor=user).exists()
    assert listed(agent.get("/queues/finance/")) == [cases["uninvoiced"].pk, case.pk]  # still open


def test_comment(agent, cases, user):
    case = cases["held"]

    response = act(agent, case.pk, "comment", note="Waiting for the POD.", **{"from": "detail"})

    assert case.history.get(action="commented").note == "Waiting for the POD."
    body = text(response)
    assert f'id="case-{case.pk}-more" class="case-more" hx-swap-oob="innerHTML"' in body
    assert "Waiting for the POD." in body  # the expanded history is refreshed


@pytest.mark.parametrize(("action", "status"), [("resolve", "resolved"), ("dismiss", "dismissed")])
def test_closing_with_a_reason_removes_the_row(agent, cases, user, action, status):
    case = cases["held"]

    response = act(agent, case.pk, action, reason_code="invoiced_manually", note="Sent by hand")

    case.refresh_from_db()
    assert (case.status, case.resolution, case.resolution_note) == (status, "invoiced_manually", "Sent by hand")
    event = case.history.get(action=status)
    assert (event.actor, event.reason_code, event.note) == (user, "invoiced_manually", "Sent by hand")
    body = text(response)
    assert f'<tbody id="case-{case.pk}-group" hx-swap-oob="delete">' in body
    assert re.search(r"Finance <span class=\"count\">1<", body)  # counters updated
    assert listed(agent.get("/queues/finance/")) == [cases["uninvoiced"].pk]


def test_closing_without_a_reason_is_refused_with_a_clear_error(agent, cases):
    case = cases["held"]

    response = act(agent, case.pk, "resolve", note="no reason")

    assert response.status_code == 200
    assert 'role="alert"' in text(response)
    assert "Choose a reason to resolve or dismiss." in text(response)
    case.refresh_from_db()
    assert case.status == "open"
    assert not case.history.exclude(action="opened").exists()


def test_a_comment_needs_text_and_an_action_needs_cases(agent, cases):
    assert "Write a comment." in text(act(agent, cases["held"].pk, "comment", note="  "))
    assert "Select at least one case." in text(act(agent, [], "acknowledge"))
    assert "No such case: #999999." in text(act(agent, 999999, "acknowledge"))


def test_bulk_resolve_and_assign(agent, rules, user):
    bulk = [make_case(rules["invoice_held"], f"SO-K{i}") for i in range(3)]
    other = make_case(rules["invoice_held"], "SO-K9")
    ids = [case.pk for case in bulk]

    assigned = act(agent, ids, "assign_to_me")
    resolved = act(agent, ids, "resolve", reason_code="fixed_at_source")

    assert "Assigned to you 3 cases." in text(assigned)
    assert "Resolved 3 cases." in text(resolved)
    for case in bulk:
        case.refresh_from_db()
        assert (case.status, case.assignee, case.resolution) == ("resolved", user, "fixed_at_source")
        assert list(case.history.values_list("action", flat=True)) == ["opened", "assigned", "resolved"]
        assert f'<tbody id="case-{case.pk}-group" hx-swap-oob="delete">' in text(resolved)
    assert ExceptionCase.objects.get(pk=other.pk).status == "open"


def test_bulk_acknowledge_and_comment(agent, rules, user):
    bulk = [make_case(rules["invoice_held"], f"SO-L{i}") for i in range(2)]
    ids = [case.pk for case in bulk]

    act(agent, ids, "acknowledge")
    act(agent, ids, "comment", note="Batch checked")

    for case in bulk:
        case.refresh_from_db()
        assert case.status == "acknowledged"
        assert case.history.filter(action="commented", note="Batch checked", actor=user).exists()


def test_an_already_closed_case_is_left_alone_and_said_so(agent, cases):
    case = cases["held"]
    ExceptionCase.objects.filter(pk=case.pk).update(status="resolved")

    response = act(agent, case.pk, "dismiss", reason_code="duplicate")

    assert "Dismissed 0 cases. 1 case left as they were" in text(response)
    assert ExceptionCase.objects.get(pk=case.pk).status == "resolved"


def test_a_plain_post_redirects_back_with_a_message(agent, cases):
    case = cases["held"]

    response = agent.post(
        "/cases/actions/",
        {"case": case.pk, "action": "resolve", "reason_code": "other", "next": "/queues/finance/?sort=amount"},
    )
    refused = agent.post("/cases/actions/", {"case": case.pk, "action": "resolve", "next": "https://evil.example/"})

    assert response.status_code == 302
    assert response.url == "/queues/finance/?sort=amount"
    assert refused.url == "/queues/mine/"
    assert ExceptionCase.objects.get(pk=case.pk).status == "resolved"


def test_actions_broadcast_to_the_queue_on_commit(agent, cases, monkeypatch, django_capture_on_commit_callbacks):
    sent = []
    monkeypatch.setattr("apps.exceptions.realtime.broadcast_cases_changed", lambda queues: sent.append(queues))

    with django_capture_on_commit_callbacks(execute=True):
        act(agent, cases["held"].pk, "acknowledge")

    assert sent == [["finance"]]


# --- CSV --------------------------------------------------------------------------------------


def test_csv_export_streams_every_matching_case(agent, rules, partners):
    for i in range(60):
        make_case(rules["invoice_held"], f"SO-C{i:02}", hours_ago=100 - i, amount_at_risk=Decimal(i))
    make_case(rules["dead_letter"], "MSG-X")
    make_case(rules["invoice_held"], "=HYPERLINK", summary="=HYPERLINK(evil)", customer=partners["ACME"])

    response = agent.get("/queues/finance/export.csv", {"min_amount": "10"})

    assert response.streaming
    assert response["Content-Type"] == "text/csv"
    assert "attachment" in response["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert len(rows) == 50  # amounts 10..59, every one, not one page
    assert rows[0]["order"] == "SO-C10"
    assert rows[0]["rule"] == "invoice_held"
    assert rows[0]["queue"] == "finance"
    assert rows[0]["amount_at_risk"] == "10.0000"
    assert rows[0]["status"] == "open"

    everything = agent.get("/queues/finance/export.csv")
    rows = list(csv.DictReader(io.StringIO(b"".join(everything.streaming_content).decode())))
    assert len(rows) == 61
    assert rows[-1]["summary"] == "'=HYPERLINK(evil)"  # never a formula


# --- live -------------------------------------------------------------------------------------


def test_a_queue_page_socket_gets_a_refresh_when_its_queue_changes(user):
    from asgiref.sync import async_to_sync
    from channels.routing import URLRouter
    from channels.testing import WebsocketCommunicator
    from django.contrib.auth.models import AnonymousUser

    from apps.exceptions.realtime import broadcast_cases_changed
    from controltower.routing import websocket_urlpatterns

    app = URLRouter(websocket_urlpatterns)

    async def scenario() -> tuple[str, bool, bool]:
        finance = WebsocketCommunicator(app, "/ws/queues/finance/?sort=amount&status=open")
        finance.scope["user"] = user
        other = WebsocketCommunicator(app, "/ws/queues/integration/")
        other.scope["user"] = user
        anonymous = WebsocketCommunicator(app, "/ws/queues/finance/")
        anonymous.scope["user"] = AnonymousUser()
        assert (await finance.connect())[0]
        assert (await other.connect())[0]
        refused = not (await anonymous.connect())[0]
        await broadcast_async(["finance"])
        message = await finance.receive_from(timeout=2)
        quiet = await other.receive_nothing(timeout=0.2)
        await finance.disconnect()
        await other.disconnect()
        return message, quiet, refused

    async def broadcast_async(queues):
        from asgiref.sync import sync_to_async

        await sync_to_async(broadcast_cases_changed, thread_sensitive=False)(queues)

    message, quiet, refused = async_to_sync(scenario)()

    assert 'id="queue-live" hx-swap-oob="true"' in message
    assert 'hx-get="/queues/finance/?sort=amount&amp;status=open"' in message
    assert 'hx-target="#queue-list"' in message
    assert quiet
    assert refused


def test_counts_stop_at_the_limit_and_say_so(agent, rules, monkeypatch):
    from apps.exceptions import context_processors, selectors
    from controltower import keyset

    monkeypatch.setattr(keyset, "COUNT_LIMIT", 3)
    for module in (selectors, context_processors):
        monkeypatch.setattr(module, "NAV_COUNT_LIMIT", 3)
    for i in range(5):
        make_case(rules["invoice_held"], f"SO-L{i}", hours_ago=10 + i)

    page = text(agent.get("/queues/finance/"))

    assert re.search(r"Finance <span class=\"count\">3\+</span>", page)
    assert "3+ cases" in page
    assert len(listed(agent.get("/queues/finance/"))) == 5

"""Every role, a person with no role and an anonymous visitor, against every page, export, API
action and websocket: who reads what, who changes what, and who sees which amounts.

The routes come from the URLconf, so a page or an API added later without an entry here fails
``test_every_route_is_in_the_matrix``. Allowed means 200 with the data on it (a redirect to the
login page is never a pass); refused means 403 (401 for an API call without credentials, the
login page for an anonymous visitor of a page) with none of the data, and nothing changed.
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, Permission
from django.http import HttpResponse
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.utils import timezone

from apps.billing.models import Invoice
from apps.exceptions.models import ExceptionCase, NotificationPreference
from apps.exceptions.roles import roles_ensure
from apps.exceptions.services import builtin_rules_ensure, detect
from apps.ingest.models import InboundMessage
from apps.inventory.models import InventoryPosition
from apps.outbound.models import Delivery, Subscription, TrackingLink
from apps.partners.models import Channel, Partner
from apps.timeline.events import EventSource, parse_events
from apps.timeline.models import Order
from apps.timeline.realtime import broadcast_orders_changed
from apps.timeline.services import apply_events
from controltower.routing import websocket_urlpatterns
from tests.factories import (
    ChannelFactory,
    DeliveryFactory,
    InboundMessageFactory,
    OrderFactory,
    PartnerFactory,
    SubscriptionFactory,
    TrackingLinkFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db

ANONYMOUS, NO_ROLE = "anonymous", "no role"
CS, FINANCE, SUPPLY, INTEGRATION = "Customer Service", "Finance", "Supply Chain", "Integration Admin"
ROLES = (CS, FINANCE, SUPPLY, INTEGRATION)
PERSONAS = (ANONYMOUS, NO_ROLE, *ROLES)
EVERY_ROLE = frozenset(ROLES)
EVERYONE = frozenset(PERSONAS)
QUEUE_OF = {CS: "customer_service", FINANCE: "finance", SUPPLY: "supply_chain", INTEGRATION: "integration"}

# The money in the story, as each surface prints it ("734.25 EUR", "734.2500", "734.25").
FREIGHT_AMOUNT, FREIGHT_QUOTE, FREIGHT_EXCESS = "734.25", "610.00", "124.25"
INVOICE_AMOUNT = "968.40"
STOCK_SKU = "SKU-STOCK-7"
DEAD_ERROR = "ST segment count does not match SE01"


# --- the story: one order from creation to a held invoice, cases in every queue -----------------


@dataclass
class World:
    order: Order
    other_order: Order
    cases: dict[str, ExceptionCase]
    dead_message: InboundMessage
    subscription: Subscription
    dead_delivery: Delivery
    link: TrackingLink
    people: dict[str, AbstractBaseUser | AnonymousUser]


def _ago(days: float) -> str:
    return (timezone.now() - timedelta(days=days)).isoformat()


def _event(event_id: str, kind: str, days_ago: float, *refs: tuple[str, str], **fields: Any) -> dict[str, Any]:
    references = [{"kind": kind_, "value": value} for kind_, value in refs]
    return {"event_id": event_id, "kind": kind, "occurred_at": _ago(days_ago), "references": references, **fields}


def _apply(*items: dict[str, Any], partner: str, channel: str) -> None:
    apply_events(parse_events(list(items), source=EventSource(partner=partner, channel=channel)))


@pytest.fixture
def world(django_user_model) -> World:
    groups = roles_ensure()
    builtin_rules_ensure()
    customer = PartnerFactory(code="ACME", name="Acme Retail", kind=Partner.Kind.CUSTOMER)
    erp = PartnerFactory(code="ERP", name="Acme ERP", kind=Partner.Kind.ERP)
    warehouse = PartnerFactory(code="DCLYON", name="DC Lyon", kind=Partner.Kind.WAREHOUSE)
    carrier = PartnerFactory(code="UPSN", name="UPS", kind=Partner.Kind.CARRIER)
    ChannelFactory(partner=erp, code="api", name="ERP API", format=Channel.Format.API)
    ChannelFactory(partner=warehouse, code="edi", name="DC Lyon EDI", format=Channel.Format.X12)
    ChannelFactory(partner=carrier, code="hook", name="UPS webhook", format=Channel.Format.WEBHOOK)
    header = {"customer": customer.code, "promised_at": _ago(7), "region": "EU-West"}
    lines = [{"sku": "SKU-1", "quantity": "5", "unit_price": "12.50"}]
    _apply(
        _event("so-4711", "order.created", 10, ("order", "SO-4711"), ("po", "PO-88"), order=header, lines=lines),
        _event("so-4711-rel", "order.released", 9, ("order", "SO-4711")),
        _event("so-4712", "order.created", 3, ("order", "SO-4712"), order=header, lines=lines),
        _event("so-4712-rel", "order.released", 3, ("order", "SO-4712")),
        _event(
            "inv-4711",
            "invoice.generated",
            4,
            ("invoice", "INV-4711"),
            ("order", "SO-4711"),
            amount=INVOICE_AMOUNT,
            currency="EUR",
        ),
        _event("inv-4711-held", "invoice.held", 3, ("invoice", "INV-4711"), attributes={"reason": "price variance"}),
        partner="ERP",
        channel="api",
    )
    _apply(
        _event(
            "sh-4711",
            "shipment.manifested",
            8,
            ("shipment", "SH-4711"),
            ("tracking", "1Z4711000000000001"),
            ("order", "SO-4711"),
            attributes={"carrier": "UPSN", "warehouse": "DCLYON"},
        ),
        partner="DCLYON",
        channel="edi",
    )
    _apply(
        _event("sh-4711-del", "shipment.delivered", 5, ("tracking", "1Z4711000000000001")),
        _event(
            "fb-4711",
            "freight.charge_posted",
            6,
            ("shipment", "SH-4711"),
            ("pro", "PRO-4711"),
            amount=FREIGHT_AMOUNT,
            currency="EUR",
            attributes={"quoted_amount": FREIGHT_QUOTE},
        ),
        partner="UPSN",
        channel="hook",
    )
    stock = [{"sku": STOCK_SKU, "quantity": "40"}]
    _apply(
        _event("stock-1", "inventory.snapshot", 1, lines=stock, attributes={"warehouse": "DCLYON"}),
        partner="DCLYON",
        channel="edi",
    )
    dead = InboundMessageFactory(partner=erp, status=InboundMessage.Status.DEAD, error=DEAD_ERROR, format="x12")
    detect()
    cases = {
        case.rule.code: case
        for case in ExceptionCase.objects.select_related("rule").filter(status=ExceptionCase.Status.OPEN)
    }
    subscription = SubscriptionFactory(
        partner=erp, name="ERP shipment feed", target_url="https://erp.example.com/events"
    )
    people: dict[str, AbstractBaseUser | AnonymousUser] = {ANONYMOUS: AnonymousUser()}
    people[NO_ROLE] = django_user_model.objects.create_user("no-role", email="nobody@example.com", is_staff=True)
    for role, group in groups.items():
        person = UserFactory(username=role.lower().replace(" ", "-"), is_staff=role == INTEGRATION)
        person.groups.add(group)
        people[role] = person
    return World(
        order=Order.objects.get(number="SO-4711"),
        other_order=Order.objects.get(number="SO-4712"),
        cases=cases,
        dead_message=dead,
        subscription=subscription,
        dead_delivery=DeliveryFactory(
            subscription=subscription,
            status=Delivery.Status.DEAD,
            dead_at=timezone.now(),
            last_error="the receiver refused it: HTTP 400",
        ),
        link=TrackingLinkFactory(order=Order.objects.get(number="SO-4711")),
        people=people,
    )


def _client(world: World, persona: str) -> Client:
    client = Client()
    if persona != ANONYMOUS:
        client.force_login(world.people[persona])
    return client


def _body(response: HttpResponse) -> str:
    if response.streaming:
        return b"".join(response.streaming_content).decode()
    return response.content.decode()


def test_the_story_opens_a_case_in_every_queue(world):
    """The matrix below is only as good as its data: a case per queue, money on both kinds of case."""
    queues = {case.queue for case in world.cases.values()}
    assert queues == set(QUEUE_OF.values())
    assert world.cases["invoice_held"].subject_type == "invoice"
    assert str(world.cases["invoice_held"].amount_at_risk) == "968.4000"
    assert world.cases["freight_disputed_or_over_quote"].subject_type == "freight_charge"
    assert str(world.cases["freight_disputed_or_over_quote"].amount_at_risk) == "124.2500"


# --- the routes --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Read:
    """A GET: who may read it, and a piece of the data that must show to them and only to them."""

    url: Callable[[World], str]
    readers: frozenset[str]
    shows: str
    api: bool = False


def _case(code: str) -> Callable[[World], int]:
    return lambda w: w.cases[code].pk


def _stock_position(_: World) -> str:
    return reverse("inventory-position", args=[InventoryPosition.objects.get(sku=STOCK_SKU).pk])


READS: dict[str, Read] = {
    "inventory": Read(lambda w: reverse("inventory"), frozenset({SUPPLY}), STOCK_SKU),
    "inventory-export": Read(lambda w: reverse("inventory-export"), frozenset({SUPPLY}), STOCK_SKU),
    "inventory-position": Read(_stock_position, frozenset({SUPPLY}), STOCK_SKU),
    "api-inventory": Read(lambda w: reverse("api-inventory"), frozenset({SUPPLY}), f'"{STOCK_SKU}"', api=True),
    "search": Read(lambda w: reverse("search") + "?q=SO-471", EVERY_ROLE, "SO-4712"),
    # What needs you now: every signed-in person lands here; one without a role is told so.
    "home": Read(lambda w: reverse("home"), EVERY_ROLE | {NO_ROLE}, "What needs you now"),
    "order-list": Read(lambda w: reverse("order-list"), EVERY_ROLE, "SO-4711"),
    "order-detail": Read(lambda w: reverse("order-detail", args=[w.order.pk]), EVERY_ROLE, "PRO-4711"),
    "api-orders": Read(lambda w: reverse("api-orders") + "?ref=PO-88", EVERY_ROLE, "SO-4711", api=True),
    "api-order-detail": Read(lambda w: reverse("api-order-detail", args=[w.order.pk]), EVERY_ROLE, "PRO-4711", True),
    "case-queue": Read(lambda w: reverse("case-queue", args=["finance"]), EVERY_ROLE, "INV-4711"),
    "case-queue-export": Read(lambda w: reverse("case-queue-export", args=["finance"]), EVERY_ROLE, "INV-4711"),
    "case-detail": Read(lambda w: reverse("case-detail", args=[_case("invoice_held")(w)]), EVERY_ROLE, "INV-4711"),
    "api-cases": Read(lambda w: reverse("api-cases") + "?queue=finance", EVERY_ROLE, "INV-4711", api=True),
    "api-case-detail": Read(
        lambda w: reverse("api-case-detail", args=[_case("invoice_held")(w)]), EVERY_ROLE, "INV-4711", api=True
    ),
    "notification-settings": Read(lambda w: reverse("notification-settings"), EVERY_ROLE, 'name="daily_digest"'),
    "sla-dashboard": Read(
        lambda w: reverse("sla-dashboard"), frozenset({FINANCE, SUPPLY, INTEGRATION}), "SLA dashboard"
    ),
    "kpi-drill": Read(
        lambda w: reverse("kpi-drill") + "?metric=delivery_to_invoice",
        frozenset({FINANCE, SUPPLY, INTEGRATION}),
        "Last delivery → invoice generated",
    ),
    "integration-health": Read(lambda w: reverse("integration-health"), frozenset({INTEGRATION}), "Acme ERP"),
    "dead-letters": Read(lambda w: reverse("dead-letters"), frozenset({INTEGRATION}), DEAD_ERROR),
    "message-trace": Read(
        lambda w: reverse("message-trace", args=[w.dead_message.pk]), frozenset({INTEGRATION}), DEAD_ERROR
    ),
    "api-message": Read(
        lambda w: reverse("api-message", args=[w.dead_message.pk]), frozenset({INTEGRATION}), DEAD_ERROR, api=True
    ),
    "order-tracking-links": Read(
        lambda w: reverse("order-tracking-links", args=[w.order.pk]), frozenset({CS, INTEGRATION}), "Valid for (days)"
    ),
    "order-prediction": Read(
        lambda w: reverse("order-prediction", args=[w.order.pk]), EVERY_ROLE, "Predicted delivery"
    ),
    "shipments-at-risk": Read(lambda w: reverse("shipments-at-risk"), EVERY_ROLE, "Shipments at risk"),
    "api-predictions": Read(lambda w: reverse("api-predictions"), EVERY_ROLE, '"results"', api=True),
    "prediction-backtest": Read(
        lambda w: reverse("prediction-backtest"), frozenset({FINANCE, SUPPLY, INTEGRATION}), "how accurate it has been"
    ),
    "subscription-list": Read(lambda w: reverse("subscription-list"), frozenset({INTEGRATION}), "ERP shipment feed"),
    "subscription-detail": Read(
        lambda w: reverse("subscription-detail", args=[w.subscription.pk]), frozenset({INTEGRATION}), "HTTP 400"
    ),
    "delivery-detail": Read(
        lambda w: reverse("delivery-detail", args=[w.dead_delivery.pk]), frozenset({INTEGRATION}), "HTTP 400"
    ),
    "api-subscription-list": Read(
        lambda w: reverse("api-subscription-list"), frozenset({INTEGRATION}), "ERP shipment feed", api=True
    ),
    "api-subscription-detail": Read(
        lambda w: reverse("api-subscription-detail", args=[w.subscription.pk]),
        frozenset({INTEGRATION}),
        "ERP shipment feed",
        api=True,
    ),
    "api-subscription-deliveries": Read(
        lambda w: reverse("api-subscription-deliveries", args=[w.subscription.pk]),
        frozenset({INTEGRATION}),
        "HTTP 400",
        api=True,
    ),
    # A share link handed to the customer: public by design, and it shows no money.
    "track": Read(lambda w: reverse("track", args=[w.link.token]), EVERYONE, "SO-4711"),
}

# Pages that send a signed-in reader on, to where the reading happens.
REDIRECTS: dict[str, tuple[str, str, frozenset[str]]] = {
    "case-queues": ("/queues/", "/queues/mine/", EVERY_ROLE),
}

# Actions: checked with their effects by the tests of the next section (GET on them is refused).
ACTIONS = {
    "case-actions",
    "api-case-actions",
    "messages-replay",
    "api-messages-replay",
    "deliveries-replay",
    "api-deliveries-replay",
    "tracking-link-create",
    "tracking-link-revoke",
    "api-subscription-rotate-secret",
}

# Outside the people's matrix, each for its reason and with its own tests.
NOT_PEOPLE_PAGES = {
    "healthz": "liveness for load balancers, no data (controltower tests)",
    "metrics": "Prometheus, behind its own token (apps/dashboards/tests/test_metrics.py)",
    "login": "signing in",
    "logout": "signing out",
    "api-schema": "the API's description, no data",
    "api-docs": "the API's description, no data",
    "webhook": "partners' signed webhooks, no session (apps/ingest/tests/test_webhooks.py)",
    "api-messages": "receiver: partner tokens, and staff with ingest.post_inboundmessage (apps/ingest/tests)",
    "api-events": "receiver: partner tokens, and staff with ingest.post_inboundmessage (apps/ingest/tests)",
}
ADMIN_NAMESPACE = "admin"  # Django admin: staff flag and model permissions (the test_admin modules)


def _route_names(patterns: list, namespace: str = "") -> set[str]:
    names = set()
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            inner = f"{namespace}{pattern.namespace}:" if pattern.namespace else namespace
            names |= _route_names(pattern.url_patterns, inner)
        elif isinstance(pattern, URLPattern):
            names.add(f"{namespace}{pattern.name}" if pattern.name else f"{namespace}<unnamed {pattern.pattern}>")
    return names


def test_every_route_is_in_the_matrix():
    routes = {name for name in _route_names(get_resolver().url_patterns) if not name.startswith(ADMIN_NAMESPACE + ":")}
    listed = set(READS) | set(REDIRECTS) | ACTIONS | set(NOT_PEOPLE_PAGES)
    assert routes - listed == set(), "add these routes to the role matrix"
    assert listed - routes == set(), "the matrix lists routes that no longer exist"


@pytest.mark.parametrize("name", sorted(READS))
def test_who_reads_each_page_and_api(world, name):
    read = READS[name]
    url = read.url(world)
    for persona in PERSONAS:
        response = _client(world, persona).get(url)
        body = _body(response)
        if persona in read.readers:
            assert response.status_code == 200, f"{persona} should read {url}"
            assert read.shows in body, f"{persona} should see {read.shows!r} on {url}"
            continue
        if persona == ANONYMOUS and not read.api:
            assert response.status_code == 302, f"{url} should send an anonymous visitor to sign in"
            assert response["Location"].startswith(reverse("login")), response["Location"]
        else:
            expected = 401 if persona == ANONYMOUS else 403
            assert response.status_code == expected, f"{persona} got {response.status_code} on {url}"
        assert read.shows not in body, f"{persona} saw {read.shows!r} on {url}"


@pytest.mark.parametrize("name", sorted(REDIRECTS))
def test_landing_pages_send_readers_on_and_strangers_away(world, name):
    path, target, readers = REDIRECTS[name]
    for persona in PERSONAS:
        response = _client(world, persona).get(path)
        assert response.status_code in (302, 403), f"{persona} got {response.status_code} on {path}"
        location = response.get("Location", "")
        if persona in readers:
            assert location == target, f"{persona} sent to {location!r} from {path}"
        elif persona == ANONYMOUS:
            assert location.startswith(reverse("login")), location
        else:
            assert response.status_code == 403, f"{persona} got {response.status_code} on {path}"


# --- actions, with their effects ------------------------------------------------------------------
# Each action is tried by every persona in turn, each on a target of its own, those refused first:
# nothing changes for them, and the change happens for those allowed.


def _refused_first(allowed: frozenset[str]) -> list[str]:
    return sorted(PERSONAS, key=lambda persona: persona in allowed)


def _assert_outcome(response: HttpResponse, persona: str, allowed: bool, *, api: bool, what: str) -> None:
    if allowed:
        assert response.status_code in (200, 201, 204, 302), f"{persona} on {what}: {response.status_code}"
        if response.status_code == 302:  # back to the page the action came from, never to the login page
            assert not response["Location"].startswith(reverse("login")), response["Location"]
    elif persona == ANONYMOUS and api:
        assert response.status_code == 401, f"{persona} on {what}: {response.status_code}"
    elif persona == ANONYMOUS:
        assert response["Location"].startswith(reverse("login")), f"{persona} on {what}: {response.status_code}"
    else:
        assert response.status_code == 403, f"{persona} on {what}: {response.status_code}"


QUEUE_CASES = {
    "customer_service": "late_against_promise",
    "finance": "invoice_held",
    "supply_chain": "released_not_picked",
    "integration": "dead_letter",
}


@pytest.mark.parametrize("queue", sorted(QUEUE_CASES))
def test_people_work_the_cases_of_their_own_queue_only(world, queue):
    case = world.cases[QUEUE_CASES[queue]]
    workers = frozenset(role for role, own in QUEUE_OF.items() if own == queue)
    for persona in _refused_first(workers):
        allowed = persona in workers
        note = f"Called the carrier ({persona})"
        page = _client(world, persona).post(reverse("case-actions"), {"case": case.pk, "action": "acknowledge"})
        _assert_outcome(page, persona, allowed, api=False, what=f"acknowledge in {queue}")
        case.refresh_from_db()
        assert (case.status == ExceptionCase.Status.ACKNOWLEDGED) is allowed, persona
        api = _client(world, persona).post(
            reverse("api-case-actions", args=[case.pk]), {"action": "comment", "note": note}, "application/json"
        )
        _assert_outcome(api, persona, allowed, api=True, what=f"comment in {queue}")
        assert case.history.filter(action="commented", note=note).exists() is allowed, persona


def test_only_finance_moves_money(world):
    held = world.cases["invoice_held"]
    for persona in _refused_first(frozenset({FINANCE})):
        response = _client(world, persona).post(
            reverse("case-actions"), {"case": held.pk, "action": "release_hold", "note": "Price agreed"}
        )
        _assert_outcome(response, persona, persona == FINANCE, api=False, what="release_hold")
        released = Invoice.objects.get(number="INV-4711").status == Invoice.Status.RELEASED
        assert released is (persona == FINANCE), persona


def test_notification_settings_are_saved_by_people_with_a_role(world):
    for persona in PERSONAS:
        response = _client(world, persona).post(
            reverse("notification-settings"), {"daily_digest": "on", "critical_immediately": "on"}
        )
        _assert_outcome(response, persona, persona in EVERY_ROLE, api=False, what="notification settings")
        saved = NotificationPreference.objects.filter(critical_immediately=True)
        who = world.people[persona]
        assert saved.filter(user_id=who.pk).exists() is (persona in EVERY_ROLE), persona
    assert saved.count() == len(EVERY_ROLE)


def _dead_message(world: World) -> InboundMessage:
    partner = Partner.objects.get(code="ERP")
    return InboundMessageFactory(partner=partner, status=InboundMessage.Status.DEAD, error=DEAD_ERROR, format="x12")


def _dead_delivery(world: World) -> Delivery:
    return DeliveryFactory(
        subscription=world.subscription, status=Delivery.Status.DEAD, dead_at=timezone.now(), last_error="HTTP 400"
    )


def _subscription(world: World) -> Subscription:
    return SubscriptionFactory(partner=world.subscription.partner, target_url="https://erp.example.com/events")


def _stored(row: Any) -> dict:
    """The row as stored now (empty once deleted), to tell whether an action changed it."""
    return type(row).objects.filter(pk=row.pk).values().first() or {}


@dataclass(frozen=True)
class Action:
    """``target`` makes what one persona acts on; ``post`` acts; ``happened`` tells the effect from
    the target and its stored row from before."""

    target: Callable[[World], Any]
    post: Callable[[Client, Any], HttpResponse]
    happened: Callable[[Any, dict], bool]
    doers: frozenset[str]
    api: bool = False


IA = frozenset({INTEGRATION})
JSON = "application/json"
ACTION_MATRIX: dict[str, Action] = {
    "messages-replay": Action(
        _dead_message,
        lambda client, message: client.post(reverse("messages-replay"), {"ids": [message.pk]}),
        lambda message, before: _stored(message)["status"] == InboundMessage.Status.RECEIVED,
        IA,
    ),
    "api-messages-replay": Action(
        _dead_message,
        lambda client, message: client.post(reverse("api-messages-replay"), {"ids": [message.pk]}, JSON),
        lambda message, before: _stored(message)["status"] == InboundMessage.Status.RECEIVED,
        IA,
        api=True,
    ),
    "deliveries-replay": Action(
        _dead_delivery,
        lambda client, delivery: client.post(
            reverse("deliveries-replay", args=[delivery.subscription_id]), {"ids": [delivery.pk]}
        ),
        lambda delivery, before: _stored(delivery)["status"] != Delivery.Status.DEAD,
        IA,
    ),
    "api-deliveries-replay": Action(
        _dead_delivery,
        lambda client, delivery: client.post(reverse("api-deliveries-replay"), {"ids": [delivery.pk]}, JSON),
        lambda delivery, before: _stored(delivery)["status"] != Delivery.Status.DEAD,
        IA,
        api=True,
    ),
    "tracking-link-create": Action(
        lambda world: OrderFactory(customer=world.order.customer),
        lambda client, order: client.post(reverse("tracking-link-create", args=[order.pk]), {"days": "7"}),
        lambda order, before: TrackingLink.objects.filter(order=order).exists(),
        frozenset({CS, INTEGRATION}),
    ),
    "tracking-link-revoke": Action(
        lambda world: TrackingLinkFactory(order=world.order),
        lambda client, link: client.post(reverse("tracking-link-revoke", args=[link.pk])),
        lambda link, before: _stored(link)["revoked_at"] is not None,
        frozenset({CS, INTEGRATION}),
    ),
    "api-subscription-list": Action(
        lambda world: f"Invoices to ERP {Subscription.objects.count()}",
        lambda client, name: client.post(
            reverse("api-subscription-list"),
            {"partner": "ERP", "name": name, "target_url": "https://erp.example.com/in", "event_kinds": ["invoice.*"]},
            JSON,
        ),
        lambda name, before: Subscription.objects.filter(name=name).exists(),
        IA,
        api=True,
    ),
    "api-subscription-detail": Action(
        _subscription,
        lambda client, sub: client.patch(reverse("api-subscription-detail", args=[sub.pk]), {"active": False}, JSON),
        lambda sub, before: _stored(sub)["active"] is False,
        IA,
        api=True,
    ),
    "api-subscription-detail (delete)": Action(
        _subscription,
        lambda client, sub: client.delete(reverse("api-subscription-detail", args=[sub.pk])),
        lambda sub, before: _stored(sub) == {},
        IA,
        api=True,
    ),
    "api-subscription-rotate-secret": Action(
        _subscription,
        lambda client, sub: client.post(reverse("api-subscription-rotate-secret", args=[sub.pk])),
        lambda sub, before: _stored(sub) != before,
        IA,
        api=True,
    ),
}


def test_every_action_is_in_the_action_matrix():
    covered = {name.split(" ")[0] for name in ACTION_MATRIX} | {"case-actions", "api-case-actions"}
    assert covered >= ACTIONS


@pytest.mark.parametrize("name", sorted(ACTION_MATRIX))
def test_who_acts_and_what_it_changes(world, name):
    action = ACTION_MATRIX[name]
    for persona in _refused_first(action.doers):
        target = action.target(world)
        before = _stored(target) if hasattr(target, "pk") else {}
        response = action.post(_client(world, persona), target)
        allowed = persona in action.doers
        _assert_outcome(response, persona, allowed, api=action.api, what=name)
        assert action.happened(target, before) is allowed, f"{persona} on {name}: {response.status_code}"


@pytest.mark.parametrize("name", sorted(READS.keys() - ACTION_MATRIX.keys() - {"notification-settings"}))
def test_reads_change_nothing_when_posted_to(world, name):
    """A page that only reads refuses a POST from everyone: 405, or the refusal of a reader it is not for."""
    url = READS[name].url(world)
    for persona in PERSONAS:
        response = _client(world, persona).post(url, {})
        assert response.status_code in (302, 401, 403, 405), f"{persona} got {response.status_code} on POST {url}"
        if response.status_code == 302:
            assert response["Location"].startswith(reverse("login")), response["Location"]


# --- money: each amount to the roles granted it, on every surface ------------------------------------

# Which amounts each role sees: freight (Finance, Supply Chain) and invoices (Finance, Customer Service).
SEES_FREIGHT = {CS: False, FINANCE: True, SUPPLY: True, INTEGRATION: False}
SEES_INVOICE = {CS: True, FINANCE: True, SUPPLY: False, INTEGRATION: False}


def _shows(body: str, amount: str, expected: bool, where: str, persona: str) -> None:
    assert (amount in body) is expected, f"{persona} {'should' if expected else 'should not'} see {amount} {where}"


@pytest.mark.parametrize("persona", ROLES)
def test_the_order_page_shows_each_amount_to_the_roles_granted_it(world, persona):
    client = _client(world, persona)
    for headers in ({}, {"HTTP_HX_REQUEST": "true"}):  # the page, and the fragment a live refresh fetches
        body = _body(client.get(reverse("order-detail", args=[world.order.pk]), **headers))
        assert "Freight charge posted" in body
        assert "PRO-4711" in body
        assert "INV-4711" in body
        _shows(body, FREIGHT_AMOUNT, SEES_FREIGHT[persona], "on the order page", persona)
        _shows(body, INVOICE_AMOUNT, SEES_INVOICE[persona], "on the order page", persona)


@pytest.mark.parametrize("persona", ROLES)
def test_the_timeline_api_nulls_the_amounts_a_role_may_not_see(world, persona):
    data = _client(world, persona).get(reverse("api-order-detail", args=[world.order.pk])).json()
    (charge,) = data["freight_charges"]
    (invoice,) = data["invoices"]
    milestones = {m["kind"]: m for m in data["milestones"]}
    posted, generated = milestones["freight.charge_posted"], milestones["invoice.generated"]
    assert charge["number"] == "PRO-4711"
    assert invoice["number"] == "INV-4711"
    freight_values = [
        charge["amount"],
        charge["quoted_amount"],
        posted["amount"],
        posted["attributes"].get("quoted_amount"),
    ]
    if SEES_FREIGHT[persona]:
        assert freight_values == ["734.2500", "610.0000", "734.2500", FREIGHT_QUOTE]
    else:
        assert freight_values == [None, None, None, None]
    invoice_values = [invoice["amount"], generated["amount"], data["order"]["invoiced_amount"]]
    assert invoice_values == (["968.4000"] * 3 if SEES_INVOICE[persona] else [None] * 3)
    assert data["order"]["total_amount"] == "62.5000"  # the order's own value is not freight or invoice money


@pytest.mark.parametrize("persona", ROLES)
def test_case_lists_exports_and_the_cases_api_hide_amounts_at_risk(world, persona):
    client = _client(world, persona)
    queue = _body(client.get(reverse("case-queue", args=["finance"])))
    export = _body(client.get(reverse("case-queue-export", args=["finance"])))
    cases = {row["rule"]: row for row in client.get(reverse("api-cases") + "?queue=finance").json()["results"]}
    held = world.cases["invoice_held"]
    detail = client.get(reverse("api-case-detail", args=[held.pk])).json()
    for where, body in (("in the queue", queue), ("in the CSV export", export)):
        assert "INV-4711" in body
        assert "PRO-4711" in body
        _shows(body, FREIGHT_EXCESS, SEES_FREIGHT[persona], where, persona)
        _shows(body, FREIGHT_AMOUNT, False, where, persona)  # the summary names no figure
        _shows(body, INVOICE_AMOUNT.rstrip("0"), SEES_INVOICE[persona], where, persona)
    assert cases["freight_disputed_or_over_quote"]["amount_at_risk"] == ("124.2500" if SEES_FREIGHT[persona] else None)
    assert cases["invoice_held"]["amount_at_risk"] == ("968.4000" if SEES_INVOICE[persona] else None)
    assert detail["amount_at_risk"] == ("968.4000" if SEES_INVOICE[persona] else None)


@pytest.mark.parametrize("persona", ROLES)
def test_sorting_or_filtering_by_amount_reveals_no_hidden_amount(world, persona):
    """A hidden amount counts as none: "at least 100" does not list it, "largest first" puts it last."""
    client = _client(world, persona)
    body = _body(client.get(reverse("case-queue", args=["finance"]) + "?min_amount=100"))
    assert ("PRO-4711" in body) is SEES_FREIGHT[persona]
    assert ("INV-4711" in body) is SEES_INVOICE[persona]


def test_amount_permissions_are_the_admins_to_move(world):
    """Granting the permission to one person shows them the amount: no role name is checked anywhere."""
    person = world.people[INTEGRATION]
    client = _client(world, INTEGRATION)
    assert FREIGHT_AMOUNT not in _body(client.get(reverse("order-detail", args=[world.order.pk])))
    person.user_permissions.add(Permission.objects.get(codename="view_freight_amounts"))
    assert FREIGHT_AMOUNT in _body(client.get(reverse("order-detail", args=[world.order.pk])))


# --- websockets ----------------------------------------------------------------------------------------------

SOCKETS = {
    "order": (lambda w: f"/ws/orders/{w.order.pk}/", EVERY_ROLE),
    "queue": (lambda w: "/ws/queues/finance/", EVERY_ROLE),
    "dashboard": (lambda w: "/ws/dashboards/", frozenset({FINANCE, SUPPLY, INTEGRATION})),
    "home": (lambda w: "/ws/home/", EVERY_ROLE),
}


def _connects(path: str, user: AbstractBaseUser | AnonymousUser) -> bool:
    async def attempt() -> bool:
        socket = WebsocketCommunicator(URLRouter(websocket_urlpatterns), path)
        socket.scope["user"] = user
        connected, _ = await socket.connect()
        await socket.disconnect()
        return connected

    return async_to_sync(attempt)()


# Consumers close stale database connections around each query, so these tests commit their data.
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("socket", sorted(SOCKETS))
def test_websockets_accept_the_roles_that_read_the_page_and_refuse_the_others(world, socket):
    path, readers = SOCKETS[socket]
    for persona in PERSONAS:
        assert _connects(path(world), world.people[persona]) is (persona in readers), f"{persona} on {socket}"


@pytest.mark.django_db(transaction=True)
def test_the_order_socket_pushes_a_refresh_that_carries_no_amount(world):
    """The push only names the page; what the refresh then shows is the page's to decide (tested above)."""

    async def scenario() -> str:
        socket = WebsocketCommunicator(URLRouter(websocket_urlpatterns), f"/ws/orders/{world.order.pk}/")
        socket.scope["user"] = world.people[CS]
        assert (await socket.connect())[0]
        await sync_to_async(broadcast_orders_changed, thread_sensitive=False)([world.order.pk])
        message = await socket.receive_from(timeout=2)
        await socket.disconnect()
        return message

    message = async_to_sync(scenario)()
    assert reverse("order-detail", args=[world.order.pk]) in message
    assert FREIGHT_AMOUNT not in message
    assert INVOICE_AMOUNT not in message


@pytest.mark.parametrize("persona", ROLES)
def test_the_navigation_offers_only_the_pages_a_role_opens(world, persona):
    body = _body(_client(world, persona).get(reverse("order-list")))
    for name, read in READS.items():
        if name in ("sla-dashboard", "integration-health", "subscription-list", "notification-settings"):
            assert (f'href="{read.url(world)}"' in body) is (persona in read.readers), f"{persona}: {name} link"


def test_only_integration_admins_edit_channels_in_admin(world):
    channel = Channel.objects.get(code="api")
    url = reverse("admin:partners_channel_change", args=[channel.pk])
    allowed = _client(world, INTEGRATION).get(url)
    assert allowed.status_code == 200
    assert "ERP API" in allowed.content.decode()
    for persona in (CS, FINANCE, SUPPLY, NO_ROLE):
        refused = _client(world, persona).get(url)
        assert "ERP API" not in refused.content.decode()
        if refused.status_code == 302:  # not staff: the admin's own sign-in page, never the channel
            assert refused["Location"].startswith(reverse("admin:login"))
        else:
            assert refused.status_code == 403

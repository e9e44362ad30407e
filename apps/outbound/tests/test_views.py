"""The delivery log pages: what an integration admin sees, and replaying dead deliveries from them."""

import re
from datetime import timedelta
from html import unescape

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from apps.exceptions.roles import roles_ensure
from apps.outbound.models import Delivery, DeliveryAttempt, Endpoint, Subscription
from apps.outbound.selectors import attempts_by_hour, readable_body, x12_lines
from tests.factories import (
    DeliveryFactory,
    OrderFactory,
    OutboundEventFactory,
    SubscriptionFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db
VIEW = ["outbound.view_subscription"]
REPLAY = [*VIEW, "outbound.replay_delivery"]
HTMX = {"HTTP_HX_REQUEST": "true"}


def text(response) -> str:
    return re.sub(r"\s+", " ", response.content.decode())


def signed_in(*permissions: str, **fields) -> Client:
    client = Client()
    client.force_login(UserFactory(permissions=list(permissions), **fields))
    return client


@pytest.fixture
def viewer() -> Client:
    return signed_in(*VIEW)


@pytest.fixture
def replayer() -> Client:
    return signed_in(*REPLAY)


def delivery(subscription: Subscription, status: str = "pending", *, hours_ago: float = 1, **fields) -> Delivery:
    """A delivery made ``hours_ago``, in ``status`` since then."""
    at = timezone.now() - timedelta(hours=hours_ago)
    if status == "delivered":
        fields.setdefault("delivered_at", at)
        fields.setdefault("last_status_code", 200)
    if status == "dead":
        fields.setdefault("dead_at", at)
        fields.setdefault("last_status_code", 400)
        fields.setdefault("last_error", "the receiver refused it: HTTP 400")
    made = DeliveryFactory(subscription=subscription, status=status, **fields)
    Delivery.objects.filter(pk=made.pk).update(created_at=at)
    made.refresh_from_db()
    return made


def row(html: str, element_id: str) -> str:
    match = re.search(rf'<tr id="{element_id}"[^>]*>(.*?)</tr>', html, re.S)
    assert match, f"no row {element_id}"
    return re.sub(r"<[^>]+>", " ", match.group(1))


def cell(html: str, element_id: str, name: str) -> str:
    match = re.search(rf'<tr id="{element_id}".*?class="count-{name}">(.*?)</td>', html, re.S)
    assert match, f"no {name} in {element_id}"
    return " ".join(re.sub(r"<[^>]+>", " ", match.group(1)).split())


# --- who may see and do what ------------------------------------------------------------------------


def test_pages_need_the_view_permission(client):
    subscription = SubscriptionFactory()
    made = delivery(subscription, "dead")
    pages = [
        reverse("subscription-list"),
        reverse("subscription-detail", args=[subscription.pk]),
        reverse("delivery-detail", args=[made.pk]),
    ]
    outsider = signed_in("timeline.view_order")

    for url in pages:
        anonymous = client.get(url)
        assert anonymous.status_code == 302
        assert anonymous.url.startswith(reverse("login"))
        assert outsider.get(url).status_code == 403
    assert 'href="/outbound/"' not in outsider.get(reverse("order-list")).content.decode()


def test_a_viewer_sees_everything_but_cannot_replay(viewer):
    subscription = SubscriptionFactory()
    dead = delivery(subscription, "dead")

    page = viewer.get(reverse("subscription-detail", args=[subscription.pk]))
    refused = viewer.post(reverse("deliveries-replay", args=[subscription.pk]), {"ids": [dead.pk]}, **HTMX)

    assert page.status_code == 200
    assert f"delivery-{dead.pk}" in page.content.decode()
    assert "Replay" not in text(page)
    assert refused.status_code == 403
    assert Delivery.objects.get(pk=dead.pk).status == Delivery.Status.DEAD
    assert 'href="/outbound/"' in text(viewer.get(reverse("subscription-list")))


def test_roles_integration_admin_replays_customer_service_does_not_see():
    groups = roles_ensure()
    admin, agent = UserFactory(), UserFactory()
    admin.groups.add(groups["Integration Admin"])
    agent.groups.add(groups["Customer Service"])
    admin_client, agent_client = Client(), Client()
    admin_client.force_login(admin)
    agent_client.force_login(agent)
    subscription = SubscriptionFactory()
    delivery(subscription, "dead")

    page = admin_client.get(reverse("subscription-detail", args=[subscription.pk]))

    assert "Replay all dead (1)" in text(page)
    assert agent_client.get(reverse("subscription-list")).status_code == 403


def test_replay_needs_a_csrf_token(replayer):
    subscription = SubscriptionFactory()
    dead = delivery(subscription, "dead")
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(UserFactory(permissions=REPLAY))

    refused = strict.post(reverse("deliveries-replay", args=[subscription.pk]), {"ids": [dead.pk]})

    assert refused.status_code == 403
    assert Delivery.objects.get(pk=dead.pk).status == Delivery.Status.DEAD


# --- the list -----------------------------------------------------------------------------------------


def test_the_list_counts_the_last_day_per_subscription(viewer):
    busy = SubscriptionFactory(name="ERP events", target_url="https://erp.example.com/hooks")
    quiet = SubscriptionFactory(name="Invoices to SFTP", target_url="", event_kinds=["invoice.generated"])
    for latency in (100, 200, 600):
        delivery(busy, "delivered", last_latency_ms=latency)
    delivery(busy, "delivered", hours_ago=30, last_latency_ms=5000)
    delivery(busy, "pending")
    delivery(busy, "sending")
    delivery(busy, "dead")
    delivery(busy, "dead", hours_ago=48)
    busy.endpoint = Endpoint.objects.create(key="https://erp.example.com:443", state=Endpoint.State.OPEN)
    busy.save()

    html = viewer.get(reverse("subscription-list")).content.decode()

    busy_row = row(html, f"subscription-{busy.pk}")
    assert "ERP events" in busy_row
    assert "https://erp.example.com/hooks" in busy_row
    assert "shipment.*" in busy_row
    assert "Open" in busy_row
    assert cell(html, f"subscription-{busy.pk}", "delivered") == "3"
    assert cell(html, f"subscription-{busy.pk}", "pending") == "2"
    assert cell(html, f"subscription-{busy.pk}", "dead") == "1 (2 in all)"
    assert "300 ms average" in " ".join(busy_row.split())
    assert "600 ms slowest" in " ".join(busy_row.split())
    assert "ago" in busy_row
    quiet_row = " ".join(row(html, f"subscription-{quiet.pk}").split())
    assert "Outbox folder" in quiet_row
    assert "Closed" in quiet_row
    assert "never" in quiet_row
    assert cell(html, f"subscription-{quiet.pk}", "delivered") == "0"


def test_the_list_query_count_is_flat(viewer):
    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert viewer.get(reverse("subscription-list")).status_code == 200
        return len(captured)

    SubscriptionFactory()
    few = queries()
    for _ in range(12):
        subscription = SubscriptionFactory(endpoint=Endpoint.objects.create(key=f"https://x{_}.example.com:443"))
        delivery(subscription, "delivered")
        delivery(subscription, "dead")

    assert queries() == few


def test_the_list_stays_within_a_few_queries(viewer, django_assert_max_num_queries):
    for _ in range(20):
        delivery(SubscriptionFactory(), "delivered")

    with django_assert_max_num_queries(12):
        viewer.get(reverse("subscription-list"))


# --- one subscription -----------------------------------------------------------------------------------


def test_the_circuit_panel_says_why_nothing_is_sent(viewer):
    retry_at = timezone.now() + timedelta(minutes=4)
    endpoint = Endpoint.objects.create(
        key="http://127.0.0.1:9",
        state=Endpoint.State.OPEN,
        failures=5,
        opened_at=timezone.now() - timedelta(minutes=1),
        retry_at=retry_at,
        last_error="could not connect: [Errno 111] Connection refused",
    )
    subscription = SubscriptionFactory(endpoint=endpoint)

    page = text(viewer.get(reverse("subscription-detail", args=[subscription.pk])))

    assert "Circuit breaker" in page
    assert 'circuit-state">Open</span>' in page
    assert '<dd id="circuit-failures">5</dd>' in page
    assert "Connection refused" in page
    assert timezone.localtime(retry_at).isoformat() in page


def test_deliveries_show_what_happened_with_links_to_the_order(viewer):
    subscription = SubscriptionFactory()
    order = OrderFactory(number="SO-4711")
    delivered = delivery(
        subscription, "delivered", order=order, last_latency_ms=87, attempts=2, event=OutboundEventFactory()
    )
    waiting = delivery(subscription, "pending", last_error="HTTP 503", last_status_code=503, attempts=1)

    html = viewer.get(reverse("subscription-detail", args=[subscription.pk])).content.decode()

    shown = " ".join(row(html, f"delivery-{delivered.pk}").split())
    assert "Delivered" in shown
    assert "shipment.delivered" in shown
    assert "SO-4711" in shown
    assert f'href="{reverse("order-detail", args=[order.pk])}"' in html
    assert "200" in shown
    assert "87 ms" in shown
    assert "2 of 8" in shown
    pending = " ".join(row(html, f"delivery-{waiting.pk}").split())
    assert "Pending" in pending
    assert "HTTP 503" in pending
    assert "1 pending · 0 sending · 1 delivered · 0 dead" in text(
        viewer.get(reverse("subscription-detail", args=[subscription.pk]))
    )


def test_status_filter_and_pages(viewer):
    subscription = SubscriptionFactory()
    for _ in range(52):
        delivery(subscription, "delivered")
    dead = delivery(subscription, "dead")
    url = reverse("subscription-detail", args=[subscription.pk])

    first_response = viewer.get(url)
    first = text(first_response)
    second = text(viewer.get(url, {"after": first_response.context["page"].next_cursor}))
    only_dead = viewer.get(url, {"status": "dead"}).content.decode()
    nonsense = viewer.get(url, {"status": "lost"})

    assert "53 deliveries" in first
    assert "after=" in first
    assert second.count('class="delivery-row') == 3
    assert only_dead.count('class="delivery-row') == 1
    assert "1 delivery<" in only_dead
    assert f"delivery-{dead.pk}" in only_dead
    assert nonsense.status_code == 200
    assert text(nonsense).count('class="delivery-row') == 50


def test_the_table_refreshes_itself_as_a_partial(viewer):
    subscription = SubscriptionFactory()
    delivery(subscription, "dead")
    url = reverse("subscription-detail", args=[subscription.pk])

    page = text(viewer.get(url, {"status": "dead"}))
    partial = text(viewer.get(url, {"status": "dead"}, **HTMX))

    assert 'hx-trigger="every 5s' in page
    assert f'hx-get="{url}?status=dead"' in page
    assert partial.lstrip().startswith('<div id="deliveries"')
    assert "<html" not in partial
    assert "Circuit breaker" not in partial
    assert 'hx-trigger="every 5s' in partial


def attempted(subscription: Subscription, hours_ago: float, outcome: str) -> None:
    started = timezone.now() - timedelta(hours=hours_ago)
    DeliveryAttempt.objects.create(
        delivery=delivery(subscription), number=1, started_at=started, outcome=outcome, request_body="{}"
    )


def test_attempts_are_counted_per_hour_by_outcome_for_one_subscription():
    subscription = SubscriptionFactory()
    for hours_ago, outcome in ((0, "delivered"), (0, "delivered"), (2, "retry"), (2, "dead"), (30, "delivered")):
        attempted(subscription, hours_ago, outcome)
    attempted(SubscriptionFactory(), 0, "dead")

    hourly = attempts_by_hour(subscription_id=subscription.pk, now=timezone.now())

    assert len(hourly.labels) == 24
    assert hourly.total == 4
    assert (hourly.delivered[-1], hourly.retried[-3], hourly.dead[-3]) == (2, 1, 1)
    assert hourly.dead[-1] == 0


def test_hours_are_labelled_in_the_viewers_time_zone():
    now = timezone.now()

    with timezone.override("Asia/Kolkata"):
        labels = attempts_by_hour(subscription_id=SubscriptionFactory().pk, now=now).labels

    assert all(label.endswith(":30") for label in labels)


def test_the_detail_charts_the_last_day_of_attempts(viewer):
    busy, idle = SubscriptionFactory(), SubscriptionFactory()
    attempted(busy, 1, "retry")
    attempted(busy, 0, "delivered")

    busy_page = viewer.get(reverse("subscription-detail", args=[busy.pk])).content.decode()
    idle_page = viewer.get(reverse("subscription-detail", args=[idle.pk])).content.decode()
    refreshed = viewer.get(reverse("subscription-detail", args=[busy.pk]), **HTMX).content.decode()

    assert '<figure class="chart"><svg' in busy_page
    assert "Attempts per hour, last 24 hours" in busy_page
    assert "Stacked columns of Delivered, Failed (retried), Dead letter." in unescape(busy_page)
    assert "No attempts in the last 24 hours." in idle_page
    assert "<svg" not in idle_page
    assert "<svg" not in refreshed  # the 5 s refresh carries the table only


def test_detail_query_count_is_flat(viewer):
    subscription = SubscriptionFactory(ordered=True)
    url = reverse("subscription-detail", args=[subscription.pk])

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert viewer.get(url).status_code == 200
        return len(captured)

    def waiting_pair() -> None:
        earlier = delivery(subscription, "dead", order=OrderFactory())
        delivery(
            subscription, "pending", held_by=earlier, last_error=f"waiting for delivery #{earlier.pk} of the same order"
        )

    waiting_pair()
    few = queries()
    for _ in range(30):
        waiting_pair()

    assert queries() == few


def test_an_ordered_delivery_says_what_it_waits_for_while_the_earlier_one_is_undelivered(viewer):
    subscription = SubscriptionFactory(ordered=True)
    order = OrderFactory()
    earlier = delivery(subscription, "dead", order=order)
    later = delivery(subscription, "pending", order=order, held_by=earlier, last_error="waiting")
    sent_since = delivery(subscription, "delivered", order=OrderFactory())
    released = delivery(subscription, "pending", order=sent_since.order, held_by=sent_since, last_error="waiting")
    url = reverse("subscription-detail", args=[subscription.pk])

    html = viewer.get(url).content.decode()

    assert f"waiting for delivery #{earlier.pk} of the same order" in " ".join(
        row(html, f"delivery-{later.pk}").split()
    )
    assert f'href="{reverse("delivery-detail", args=[earlier.pk])}"' in html
    assert "waiting" not in row(html, f"delivery-{released.pk}")


# --- replay ---------------------------------------------------------------------------------------------


def test_replaying_one_dead_delivery_sends_it_again(replayer, receiver, django_capture_on_commit_callbacks):
    subscription = SubscriptionFactory(target_url=receiver.url)
    dead = delivery(subscription, "dead", attempts=8)
    other = delivery(subscription, "dead")
    url = reverse("deliveries-replay", args=[subscription.pk])

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = replayer.post(url, {"ids": [dead.pk]}, **HTMX)

    assert response.status_code == 200
    body = text(response).strip()
    assert body.startswith("1 delivery queued to send again.")
    assert '<div id="deliveries"' in body
    assert 'hx-swap-oob="true"' in body
    assert len(callbacks) == 1
    dead.refresh_from_db()
    assert dead.status == Delivery.Status.DELIVERED
    assert dead.attempts == 1
    [received] = receiver.requests
    assert received.headers["Idempotency-Key"] == str(dead.idempotency_key)
    assert received.signature_valid(subscription.secret)
    assert DeliveryAttempt.objects.get(delivery=dead).outcome == "delivered"
    assert Delivery.objects.get(pk=other.pk).status == Delivery.Status.DEAD


def test_replay_all_dead_of_a_subscription(replayer, receiver, django_capture_on_commit_callbacks):
    subscription = SubscriptionFactory(target_url=receiver.url)
    dead = [delivery(subscription, "dead") for _ in range(2)]
    done = delivery(subscription, "delivered")
    elsewhere = delivery(SubscriptionFactory(), "dead")

    with django_capture_on_commit_callbacks(execute=True):
        response = replayer.post(reverse("deliveries-replay", args=[subscription.pk]), {"all": "1"}, **HTMX)

    assert text(response).strip().startswith("2 deliveries queued to send again.")
    assert {d.status for d in Delivery.objects.filter(pk__in=[d.pk for d in dead])} == {"delivered"}
    assert sorted(receiver.keys()) == sorted(str(d.idempotency_key) for d in dead)
    assert Delivery.objects.get(pk=done.pk).attempts == 0
    assert Delivery.objects.get(pk=elsewhere.pk).status == Delivery.Status.DEAD


def test_replay_without_a_choice_or_from_another_subscription_is_refused(replayer):
    subscription = SubscriptionFactory()
    foreign = delivery(SubscriptionFactory(), "dead")
    url = reverse("deliveries-replay", args=[subscription.pk])

    empty = replayer.post(url, {}, **HTMX)
    wrong = replayer.post(url, {"ids": [foreign.pk]}, **HTMX)

    assert "Choose the deliveries to replay." in text(empty)
    assert 'class="error"' in text(wrong)
    assert Delivery.objects.get(pk=foreign.pk).status == Delivery.Status.DEAD


def test_a_plain_post_replays_and_goes_back(replayer, django_capture_on_commit_callbacks):
    subscription = SubscriptionFactory()
    dead = delivery(subscription, "dead")
    back = reverse("delivery-detail", args=[dead.pk])

    with django_capture_on_commit_callbacks() as callbacks:
        response = replayer.post(
            reverse("deliveries-replay", args=[subscription.pk]), {"ids": [dead.pk], "next": back}, follow=True
        )

    assert response.redirect_chain == [(back, 302)]
    assert "1 delivery queued to send again." in text(response)
    assert len(callbacks) == 1
    assert Delivery.objects.get(pk=dead.pk).status == Delivery.Status.PENDING
    assert "replayed by" in Delivery.objects.get(pk=dead.pk).last_error


# --- one delivery ---------------------------------------------------------------------------------------


def attempt(made: Delivery, number: int, **fields) -> DeliveryAttempt:
    defaults = {
        "started_at": timezone.now() - timedelta(minutes=10 - number),
        "duration_ms": 120,
        "outcome": "retry",
        "request_headers": {
            "Content-Type": "application/json",
            "User-Agent": "ControlTower-Outbound/1",
            "X-Timestamp": "1764100000",
            "X-Signature": "sha256=" + "ab" * 32,
            "Idempotency-Key": str(made.idempotency_key),
        },
        "request_body": '{"event_id":"published-1","kind":"shipment.delivered","schema_version":1}',
    }
    return DeliveryAttempt.objects.create(delivery=made, number=number, **{**defaults, **fields})


def test_a_delivery_shows_each_attempt_as_sent_and_answered(viewer):
    order = OrderFactory(number="SO-9001")
    made = delivery(SubscriptionFactory(), "dead", order=order, attempts=2)
    attempt(made, 1, status_code=503, error="HTTP 503", response_body='{"error": "maintenance"}')
    attempt(made, 2, status_code=400, outcome="dead", error="HTTP 400", response_body="bad signature")

    response = viewer.get(reverse("delivery-detail", args=[made.pk]))
    page = text(response)

    assert response.status_code == 200
    assert "Attempt 1" in page
    assert "Attempt 2" in page
    assert "HTTP 503" in page
    assert "maintenance" in page
    assert "bad signature" in page
    assert "sha256=" + "ab" * 32 in page
    assert "1764100000" in page
    assert str(made.idempotency_key) in page
    assert page.index("X-Signature") < page.index("User-Agent")
    body = unescape(response.content.decode())
    assert '\n  "kind": "shipment.delivered",\n' in body
    assert f'href="{reverse("order-detail", args=[order.pk])}"' in body
    assert "SO-9001" in page
    assert "the receiver refused it: HTTP 400" in page
    assert "Replay" not in page


def test_an_x12_delivery_shows_one_segment_per_line(replayer):
    made = delivery(SubscriptionFactory(), "dead")
    isa = "ISA*00*          *00*          *ZZ*CONTROLTOWER   *ZZ*ACMEERP        *261125*1200*U*00401*000000001*0*P*>~"
    x12 = isa + "GS*IN*CT*ACME*20261125*1200*1*X*004010~ST*810*0001~BIG*20261125*INV-1~SE*3*0001~"
    attempt(made, 1, request_body=x12, request_headers={"Content-Type": "application/edi-x12"}, status_code=500)

    page = replayer.get(reverse("delivery-detail", args=[made.pk])).content.decode()

    assert "Request body (X12)" in page
    assert "~\nGS*IN*CT*ACME" in page
    assert "ST*810*0001~\nBIG*20261125*INV-1~" in page
    assert "Send it again" in page


def test_a_pending_delivery_without_attempts_shows_what_it_carries(viewer):
    made = delivery(SubscriptionFactory(), "pending")

    page = text(viewer.get(reverse("delivery-detail", args=[made.pk])))

    assert "Not sent yet." in page
    assert made.event.event_id in page


def test_an_unknown_delivery_or_subscription_is_a_404(viewer):
    assert viewer.get(reverse("delivery-detail", args=[999999])).status_code == 404
    assert viewer.get(reverse("subscription-detail", args=[999999])).status_code == 404


def test_bodies_are_made_readable():
    assert (
        readable_body('{"b":1,"a":[1]}', content_type="application/json").text
        == '{\n  "a": [\n    1\n  ],\n  "b": 1\n}'
    )
    assert readable_body("{not json", content_type="application/json").format == "text"
    assert readable_body("plain words").text == "plain words"
    assert x12_lines("GS*IN~ST*810~") == "GS*IN~ST*810~"  # no ISA header: left as sent

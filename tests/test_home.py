"""The first page after sign-in answers "what needs me now", for each role, at a cost that does not
grow with the cases, orders and messages in the database."""

import itertools
import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from apps.exceptions.models import ExceptionCase, ExceptionRule
from apps.exceptions.roles import roles_ensure
from apps.ingest.models import InboundMessage
from apps.partners.models import Channel, Partner
from apps.timeline.models import Order, OrderStage

pytestmark = pytest.mark.django_db
NOW = timezone.now()
BODIES = itertools.count()


def text(response) -> str:
    return re.sub(r"\s+", " ", response.content.decode())


def section(page: str, heading_id: str) -> str:
    """The HTML of the home page's section headed by ``heading_id`` (up to the next section)."""
    start = page.index(f'id="{heading_id}"')
    end = page.find("<section", start)
    return page[start : end if end != -1 else len(page)]


def person(role: str | None, name: str | None = None):
    user = get_user_model().objects.create_user(name or (role or "nobody").lower().replace(" ", "-"))
    if role:
        user.groups.add(roles_ensure()[role])
    return user


def case(rule: ExceptionRule, number: str, *, hours_ago: float, **fields) -> ExceptionCase:
    order = Order.objects.create(number=number)
    opened = NOW - timedelta(hours=hours_ago)
    values = {
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
    return ExceptionCase.objects.create(rule=rule, **{**values, **fields})


@pytest.fixture
def rules() -> dict[str, ExceptionRule]:
    specs = [
        ("late_against_promise", "Late against the promised date", "customer_service"),
        ("delivered_not_invoiced", "Delivered, not invoiced", "finance"),
        ("freight_disputed", "Freight disputed", "finance"),
        ("released_not_picked", "Released, not picked", "supply_chain"),
        ("dead_letter", "Dead-lettered message", "integration"),
    ]
    return {code: ExceptionRule.objects.create(code=code, title=title, queue=queue) for code, title, queue in specs}


@pytest.fixture
def world(rules):
    """Cases in every queue, orders late and not, a quiet feed and a feed with dead letters."""
    for n in range(5):  # finance: five open, the oldest first on the page
        case(rules["delivered_not_invoiced"], f"SO-F{n}", hours_ago=50 - n, amount_at_risk=Decimal("1234.50"))
    case(rules["delivered_not_invoiced"], "SO-FDONE", hours_ago=90, status="resolved")  # closed: not listed
    case(rules["freight_disputed"], "SO-FREIGHT", hours_ago=1, amount_at_risk=Decimal("77.07"))
    case(rules["late_against_promise"], "SO-CS1", hours_ago=3)
    case(rules["released_not_picked"], "SO-SC1", hours_ago=4)
    case(rules["dead_letter"], "SO-INT1", hours_ago=2)

    Order.objects.create(number="SO-LATE-OPEN", promised_at=NOW - timedelta(hours=5), stage=OrderStage.SHIPPED)
    Order.objects.create(number="SO-LATE-OLD", promised_at=NOW - timedelta(days=45), stage=OrderStage.SHIPPED)
    Order.objects.create(
        number="SO-LATE-DELIVERED",
        promised_at=NOW - timedelta(days=2),
        delivered_at=NOW - timedelta(days=1),
        stage=OrderStage.DELIVERED,
    )
    Order.objects.create(number="SO-CANCELLED", promised_at=NOW - timedelta(hours=5), stage=OrderStage.CANCELLED)
    Order.objects.create(number="SO-ON-TIME", promised_at=NOW + timedelta(days=2), stage=OrderStage.SHIPPED)

    carrier = Partner.objects.create(code="UPSN", name="UPS", kind=Partner.Kind.CARRIER)
    warehouse = Partner.objects.create(code="DCLYON", name="DC Lyon", kind=Partner.Kind.WAREHOUSE)
    quiet = Channel.objects.create(
        partner=carrier,
        code="hook",
        name="UPS webhook",
        format=Channel.Format.WEBHOOK,
        expected_cadence=timedelta(hours=1),
    )
    steady = Channel.objects.create(
        partner=warehouse,
        code="edi",
        name="DC Lyon EDI",
        format=Channel.Format.X12,
        expected_cadence=timedelta(hours=1),
    )
    message(quiet, hours_ago=3)
    message(steady, hours_ago=0.2)
    for _ in range(3):
        message(steady, hours_ago=0.5, status=InboundMessage.Status.DEAD)
    message(steady, hours_ago=30, status=InboundMessage.Status.DEAD)  # before the window


def message(channel: Channel, *, hours_ago: float, status: str = InboundMessage.Status.PROCESSED) -> InboundMessage:
    made = InboundMessage.objects.create(
        partner=channel.partner,
        channel=channel,
        source="webhook",
        format="json",
        body=b"{}",
        sha256=f"{next(BODIES):064x}",
        status=status,
    )
    InboundMessage.objects.filter(pk=made.pk).update(received_at=NOW - timedelta(hours=hours_ago))
    return made


def home(client, user) -> str:
    client.force_login(user)
    response = client.get(reverse("home"))
    assert response.status_code == 200
    return text(response)


def test_finance_sees_its_queue_and_its_own_cases_oldest_first_and_late_orders(client, world):
    page = home(client, person("Finance"))

    queues = section(page, "home-queues")
    finance = queues[queues.index('id="home-queue-finance"') :]
    assert re.search(r'Finance</a> <span class="count">6</span>', finance)
    listed = re.findall(r'<span class="ident">(SO-[^<]+)</span>', finance[: finance.index("</article>")])
    assert listed == ["SO-F0", "SO-F1", "SO-F2"]  # the three oldest open, not the resolved one
    assert '<span class="amount">1,234.50 EUR</span>' in finance
    assert 'id="home-queue-mine"' in queues
    for other in ("customer_service", "supply_chain", "integration"):
        assert f'id="home-queue-{other}"' not in queues

    late = section(page, "home-late")
    assert "SO-LATE-OPEN" in late
    for not_late_now in ("SO-LATE-OLD", "SO-LATE-DELIVERED", "SO-CANCELLED", "SO-ON-TIME"):
        assert not_late_now not in late
    assert 'id="home-feeds"' not in page  # integration health is not Finance's to see


def test_customer_service_sees_its_queue_without_freight_amounts(client, world, rules):
    ExceptionCase.objects.filter(order__number="SO-CS1").update(
        subject_type="freight_charge", amount_at_risk=Decimal("555.55")
    )
    page = home(client, person("Customer Service"))

    queues = section(page, "home-queues")
    assert 'id="home-queue-customer_service"' in queues
    assert "SO-CS1" in queues
    assert "555.55" not in page
    assert 'id="home-queue-finance"' not in queues
    assert "SO-F0" not in page


def test_what_is_mine_lists_the_cases_assigned_to_me(client, world):
    me = person("Finance")
    ExceptionCase.objects.filter(order__number="SO-F3").update(assignee=me)

    mine = section(home(client, me), "home-queues")
    mine = mine[mine.index('id="home-queue-mine"') :]
    assert re.search(r'Assigned to me</a> <span class="count">1</span>', mine)
    assert "SO-F3" in mine


def test_integration_admin_sees_feeds_in_trouble(client, world):
    page = home(client, person("Integration Admin"))

    feeds = section(page, "home-feeds")
    ups = feeds[feeds.index("UPS") :]
    assert "Quiet" in ups[: ups.index("</li>")]
    lyon = feeds[feeds.index("DC Lyon") :]
    assert "3 dead letters" in lyon[: lyon.index("</li>")]  # the one a day old is outside the window
    assert "Quiet" not in lyon[: lyon.index("</li>")]
    assert 'id="home-queue-integration"' in page
    assert "SO-INT1" in page


def test_someone_without_a_role_is_told_so(client, world):
    page = home(client, person(None))

    assert "Your account has no role yet" in page
    assert 'id="home-queues"' not in page
    assert "SO-LATE-OPEN" not in page
    assert 'id="home-feeds"' not in page


def test_signing_in_lands_on_the_home_page(client, world):
    user = person("Finance")
    user.set_password("a-password-for-tests")
    user.save()

    response = client.post(reverse("login"), {"username": user.username, "password": "a-password-for-tests"})

    assert response.status_code == 302
    assert response["Location"] == reverse("home")
    assert client.get(reverse("home")).status_code == 200


def test_anonymous_visitors_go_to_the_login_page(client):
    response = client.get(reverse("home"))

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def _queries(client, user) -> list[str]:
    client.force_login(user)
    with CaptureQueriesContext(connection) as captured:
        assert client.get(reverse("home")).status_code == 200
    return [query["sql"] for query in captured]


def test_the_home_page_costs_the_same_whatever_the_data(client, world, rules):
    boss = get_user_model().objects.create_superuser("boss")
    few = _queries(client, boss)

    for n in range(40):
        case(rules["delivered_not_invoiced"], f"SO-MORE{n}", hours_ago=10 + n / 10)
        case(rules["late_against_promise"], f"SO-CSMORE{n}", hours_ago=10, assignee=boss)
        Order.objects.create(number=f"SO-LATE{n}", promised_at=NOW - timedelta(hours=n + 1), stage=OrderStage.PACKED)
    steady = Channel.objects.get(code="edi")
    for _ in range(20):
        message(steady, hours_ago=1, status=InboundMessage.Status.FAILED)
    many = _queries(client, boss)

    assert len(many) == len(few)
    # PostgreSQL reads each queue's first cases in one UNION ALL; SQLite takes a query per slice.
    assert len(many) <= (12 if connection.features.supports_slicing_ordering_in_compound else 16)
    # Every read of cases, orders and messages is bounded by a LIMIT (counts stop at a cap) or
    # reads the rows a limited read found, by id.
    big = ('FROM "exceptions_exceptioncase"', 'FROM "timeline_order"', 'FROM "ingest_inboundmessage"')
    for sql in many:
        if any(table in sql for table in big):
            assert "LIMIT" in sql or '"exceptions_exceptioncase"."id" IN (' in sql, sql
    late = section(text(client.get(reverse("home"))), "home-late")
    assert len(re.findall(r'class="ident" href="/orders/', late)) == 8
    assert "More late orders" in late


# --- live ---------------------------------------------------------------------------------------


def test_the_live_refresh_reads_only_the_page_content(client, world):
    client.force_login(person("Finance"))

    full = client.get(reverse("home")).content.decode()
    part = client.get(reverse("home"), headers={"HX-Request": "true"}).content.decode()

    assert 'ws-connect="/ws/home/"' in full
    assert part.lstrip().startswith('<div class="home" id="home-content">')
    assert "<html" not in part
    assert "ws-connect" not in part
    assert re.search(r'Finance</a> <span class="count">6</span>', re.sub(r"\s+", " ", part))


def test_a_page_without_queues_opens_no_socket(client, world):
    client.force_login(person(None))

    assert "ws-connect" not in client.get(reverse("home")).content.decode()


@pytest.mark.django_db(transaction=True)
def test_the_home_socket_refreshes_on_changes_in_my_queues_only(rules):
    from asgiref.sync import async_to_sync, sync_to_async
    from channels.routing import URLRouter
    from channels.testing import WebsocketCommunicator

    from apps.exceptions.realtime import broadcast_cases_changed
    from controltower.routing import websocket_urlpatterns

    finance, nobody = person("Finance"), person(None)
    app = URLRouter(websocket_urlpatterns)

    async def scenario() -> tuple[str, bool, bool]:
        mine = WebsocketCommunicator(app, "/ws/home/")
        mine.scope["user"] = finance
        refused = WebsocketCommunicator(app, "/ws/home/")
        refused.scope["user"] = nobody
        assert (await mine.connect())[0]
        was_refused = not (await refused.connect())[0]
        await sync_to_async(broadcast_cases_changed, thread_sensitive=False)(["integration"])
        quiet = await mine.receive_nothing(timeout=0.3)
        await sync_to_async(broadcast_cases_changed, thread_sensitive=False)(["finance"])
        pushed = await mine.receive_from(timeout=2)
        await mine.disconnect()
        return pushed, quiet, was_refused

    pushed, quiet, refused = async_to_sync(scenario)()

    assert 'id="home-live" hx-swap-oob="true"' in pushed
    assert 'hx-get="/"' in pushed
    assert 'hx-target="#home-content"' in pushed
    assert quiet, "a change in a queue I do not work must not refresh my page"
    assert refused, "someone without a role has no queues to watch"

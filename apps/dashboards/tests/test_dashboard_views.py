"""The SLA dashboard page and its drill-downs, through the test client."""

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.testing import WebsocketCommunicator
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from apps.dashboards.consumers import DashboardConsumer
from apps.dashboards.realtime import broadcast_kpis_changed
from apps.dashboards.services import kpis_refresh
from apps.dashboards.tests.conftest import step
from apps.partners.models import Partner
from apps.timeline.models import Order
from apps.timeline.services import apply_events
from tests.factories import UserFactory
from tests.stories import events, manifested, order_created

pytestmark = pytest.mark.django_db

PERIOD = {"period": "custom", "start": "2026-11-01", "end": "2026-11-07"}


@pytest.fixture
def agent(client):
    client.force_login(UserFactory(permissions=["dashboards.view_sla_dashboard"]))
    return client


def _tile(html: str, metric: str) -> str:
    start = html.index(f'data-metric="{metric}"')
    return html[start : html.index("</a>", start)]


def test_the_dashboard_needs_a_login(client):
    response = client.get(reverse("sla-dashboard"))
    assert response.status_code == 302
    assert reverse("login") in response["Location"]


def test_tiles_show_the_period_figures_and_link_to_their_orders(agent, story):
    html = agent.get(reverse("sla-dashboard"), PERIOD).content.decode()
    assert "50.0 %" in _tile(html, "otif")
    assert "1 of 2" in _tile(html, "otif")
    assert "6 h 40 min" in _tile(html, "order_to_ship")
    assert "p95 ≤ 8 h" in _tile(html, "order_to_ship")
    assert "metric=otif" in _tile(html, "otif")
    assert html.count("<svg") >= 4  # two trends, the partner comparison and the ageing histogram


def test_the_partner_filter_narrows_every_figure(agent, story):
    html = agent.get(reverse("sla-dashboard"), {**PERIOD, "partner": "UPSX"}).content.decode()
    assert "2.1 d" in _tile(html, "transit_time")  # 50 h
    assert "0.0 %" in _tile(html, "otif")


def test_an_htmx_request_gets_the_dashboard_alone(agent, story):
    response = agent.get(reverse("sla-dashboard"), PERIOD, HTTP_HX_REQUEST="true")
    html = response.content.decode()
    assert html.lstrip().startswith('<div id="dashboard"')
    assert "<html" not in html


def test_a_bad_period_says_so_and_falls_back_to_thirty_days(agent, story):
    html = agent.get(reverse("sla-dashboard"), {"period": "custom", "start": "2026-11-09", "end": "2026-11-01"})
    assert "The period starts after it ends." in html.content.decode()
    assert "Showing the last 30 days instead." in html.content.decode()


def test_the_partner_comparison_drills_down_to_that_partners_orders(agent, story):
    html = agent.get(reverse("sla-dashboard"), {**PERIOD, "compare": "transit_time"}).content.decode()
    assert "Carrier transit time by partner" in html
    drill = agent.get(reverse("kpi-drill"), {**PERIOD, "metric": "transit_time", "partner": "DHLX"}).content.decode()
    assert "SO-A" in drill
    assert "SO-C" in drill
    assert "SO-B" not in drill


def test_the_drill_down_can_show_only_what_missed(agent, story):
    html = agent.get(reverse("kpi-drill"), {**PERIOD, "metric": "otif", "missed": "1"}).content.decode()
    assert "1 missed behind this figure" in html
    assert "SO-B" in html
    assert "SO-A" not in html


def _count_queries(agent) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert agent.get(reverse("sla-dashboard"), PERIOD).status_code == 200
    return len(queries)


def test_the_dashboard_reads_rollups_in_a_constant_number_of_queries(agent, story, django_assert_max_num_queries):
    before = _count_queries(agent)
    for n in range(30):
        Partner.objects.get_or_create(code=f"CAR{n % 6}", defaults={"name": "Carrier", "kind": "carrier"})
        apply_events(
            events(
                order_created(f"SO-X{n}", order={"customer": "ACME", "region": f"R{n % 5}"}),
                step(f"SO-X{n}", "order.released", 1 + n % 3),
                manifested(f"SH-X{n}", f"1ZX{n}", f"SO-X{n}", hours=9 + n % 4, attributes={"carrier": f"CAR{n % 6}"}),
            )
        )
    kpis_refresh(order_ids=Order.objects.values_list("id", flat=True))
    assert _count_queries(agent) == before
    with django_assert_max_num_queries(12):
        agent.get(reverse("sla-dashboard"), PERIOD)


@pytest.mark.django_db(transaction=True)  # the consumer reads the permission on a connection of its own
def test_an_open_dashboard_is_told_to_refresh_with_its_own_filters(settings):
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    DashboardConsumer.delay = 0

    manager = UserFactory(permissions=["dashboards.view_sla_dashboard"])

    async def scenario() -> str:
        communicator = WebsocketCommunicator(DashboardConsumer.as_asgi(), "/ws/dashboards/?partner=UPSX&period=7")
        communicator.scope["user"] = manager
        connected, _ = await communicator.connect()
        assert connected
        await sync_to_async(broadcast_kpis_changed)()
        message = await communicator.receive_from(timeout=2)
        await communicator.disconnect()
        return message

    message = async_to_sync(scenario)()
    assert 'hx-get="/dashboards/?partner=UPSX&amp;period=7"' in message
    assert 'hx-target="#dashboard"' in message


def test_going_back_in_history_gets_the_whole_page(agent, story):
    headers = {"HTTP_HX_REQUEST": "true", "HTTP_HX_HISTORY_RESTORE_REQUEST": "true"}
    response = agent.get(reverse("sla-dashboard"), PERIOD, **headers)
    assert "<html" in response.content.decode()
    assert "HX-Request" in response["Vary"]


def test_a_fresh_visit_shows_the_filters_the_figures_use(agent, story):
    html = agent.get(reverse("sla-dashboard")).content.decode()
    assert '<option value="30" selected>Last 30 days</option>' in html
    assert '<option value="otif" selected>On time in full</option>' in html
    assert "On time in full by partner" in html


def test_filters_left_out_of_the_address_keep_their_defaults(agent, story):
    html = agent.get(reverse("sla-dashboard"), {"partner": "UPSX"}).content.decode()
    assert '<option value="30" selected>Last 30 days</option>' in html
    assert '<option value="otif" selected>On time in full</option>' in html

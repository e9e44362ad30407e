import re

import pytest
from django.urls import reverse

from apps.timeline.models import Order
from apps.timeline.tests.conftest import create_order, event, ref
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def text(response) -> str:
    return re.sub(r"\s+", " ", response.content.decode())


@pytest.mark.parametrize(
    "url",
    ["/search/?q=SO-100001", "/orders/", "/orders/1/"],
)
def test_pages_need_a_login(client, url):
    response = client.get(url)

    assert response.status_code == 302
    assert response.url.startswith(reverse("login"))


def test_login_page_renders(client):
    response = client.get(reverse("login"))

    assert response.status_code == 200
    assert 'name="username"' in text(response)


def test_search_with_one_match_redirects_to_the_order(agent_client, story):
    response = agent_client.get("/search/", {"q": " 1z999aa1 0123456784 "})

    assert response.status_code == 302
    assert response.url == reverse("order-detail", args=[story.pk])


def test_search_by_prefix_redirects_when_it_is_the_only_match(agent_client, story):
    response = agent_client.get("/search/", {"q": "BOL-5"})
    assert response.status_code == 200  # five characters: too short to match by prefix

    response = agent_client.get("/search/", {"q": "1Z999AA101"})
    assert response.url == reverse("order-detail", args=[story.pk])


def test_search_with_several_matches_lists_the_candidates(agent_client, partners, apply):
    apply(
        create_order("SO-300001", 20, promised_hours_ago=-48),
        create_order("SO-300002", 20, promised_hours_ago=-48),
        event(
            "ship-c",
            "shipment.manifested",
            10,
            ref("shipment", "SH-C1"),
            ref("order", "SO-300001"),
            ref("order", "SO-300002"),
        ),
    )

    response = agent_client.get("/search/", {"q": "SH-C1"})

    assert response.status_code == 200
    page = text(response)
    assert "2 orders match “SH-C1”" in page
    for number in ("SO-300001", "SO-300002"):
        order = Order.objects.get(number=number)
        assert f'href="{reverse("order-detail", args=[order.pk])}">{number}</a>' in page
    assert "Acme Retail" in page
    assert "Shipment SH-C1" in page
    assert '<span class="badge stage stage-shipped">Shipped</span>' in page


def test_search_with_no_match_says_so_and_offers_the_search_box(agent_client, story):
    response = agent_client.get("/search/", {"q": "NOPE-42"})

    assert response.status_code == 200
    page = text(response)
    assert "Nothing found for “NOPE-42”" in page
    assert 'id="search-q"' in page


def test_a_blank_search_shows_the_search_page(agent_client):
    response = agent_client.get("/search/", {"q": "  "})

    assert response.status_code == 200
    page = text(response)
    assert "Find an order" in page
    assert "Nothing found" not in page


def test_order_list_shows_stage_badges_filters_late_and_links(agent_client, story, apply):
    apply(create_order("SO-700001", 5, promised_hours_ago=-72))

    page = text(agent_client.get("/orders/"))
    assert "SO-100001" in page
    assert "SO-700001" in page
    assert '<span class="badge stage stage-invoiced">Invoiced</span>' in page
    assert '<span class="badge late">Late</span>' in page

    late_only = text(agent_client.get("/orders/", {"late": "on"}))
    assert "SO-100001" in late_only
    assert "SO-700001" not in late_only

    created = text(agent_client.get("/orders/", {"stage": "created"}))
    assert "SO-700001" in created
    assert "SO-100001" not in created


def test_order_list_is_paginated_by_fifty(agent_client, partners, apply, django_assert_max_num_queries):
    apply(*(create_order(f"SO-8{i:05d}", 100 - i, promised_hours_ago=-72) for i in range(55)))

    with django_assert_max_num_queries(8):
        first = text(agent_client.get("/orders/"))
    older = re.search(r'<a href="\?after=([^"]+)" rel="next">Older', first)
    second = text(agent_client.get("/orders/", {"after": older.group(1)}))
    newer = re.search(r'<a href="\?before=([^"]+)" rel="prev">← Newer', second)
    back = text(agent_client.get("/orders/", {"before": newer.group(1)}))

    assert "55 orders" in first
    assert "SO-800054" in first
    assert "SO-800005" in first
    assert "SO-800004" not in first
    assert re.findall(r"SO-8\d{5}", second) == [f"SO-80000{i}" for i in range(4, -1, -1)]
    assert "Older" not in second
    assert re.findall(r"SO-8\d{5}", back) == re.findall(r"SO-8\d{5}", first)


def test_order_page_shows_milestones_in_time_order_with_source_and_references(agent_client, story):
    response = agent_client.get(reverse("order-detail", args=[story.pk]))

    assert response.status_code == 200
    page = text(response)
    labels = [
        "Order created",
        "Picked",
        "Shipment manifested",
        "In transit",
        "New delivery estimate",
        "Invoice generated",
    ]
    positions = [page.index(f'<p class="event-kind">{label}') for label in labels]
    assert positions == sorted(positions)
    assert "from UPS via UPS webhook" in page
    assert "from DC Lyon via DC Lyon EDI" in page
    assert "Paris, FR" in page
    assert '<li class="chip">Tracking 1Z999AA10123456784</li>' in page
    assert '<li class="chip">BOL BOL-55</li>' in page


def test_order_page_header_shows_stage_amounts_and_late_badges(agent_client, story):
    page = text(agent_client.get(reverse("order-detail", args=[story.pk])))

    assert "Order SO-100001" in page
    assert "Acme Retail" in page
    assert '<span class="badge late">Late</span>' in page
    assert '<span class="badge at-risk">At risk</span>' in page
    assert "<dt>Order amount</dt><dd>62.50 EUR</dd>" in page  # 5 x 12.50 + 1 unpriced line
    assert "<dt>Invoiced</dt><dd>60.00 EUR</dd>" in page


def test_order_page_shows_shipments_invoices_and_lines(agent_client, story):
    page = text(agent_client.get(reverse("order-detail", args=[story.pk])))

    assert '<td data-label="Shipment">SH-9001</td>' in page
    assert '<td data-label="Carrier">UPS</td>' in page
    assert '<td data-label="Tracking">1Z999AA10123456784</td>' in page
    assert '<td data-label="Status">In transit' in page
    assert '<td data-label="Invoice">INV-7001</td>' in page
    assert '<td data-label="SKU">SKU-2</td>' in page


def test_order_page_shows_times_in_the_users_zone_with_its_abbreviation(agent_client, story):
    agent_client.cookies["tz"] = "America/New_York"

    page = text(agent_client.get(reverse("order-detail", args=[story.pk])))

    assert re.search(r"<time datetime=\"[^\"]+-0[45]:00\">[^<]+ E[SD]T</time>", page)


def test_order_page_connects_to_the_live_updates_of_its_order(agent_client, story):
    page = text(agent_client.get(reverse("order-detail", args=[story.pk])))

    assert f'hx-ext="ws" ws-connect="/ws/orders/{story.pk}/"' in page
    assert 'id="live-refresh"' in page
    assert "vendor/htmx/ext-ws-2.0.4.min.js" in page
    assert "vendor/htmx/htmx-2.0.11.min.js" in page


def test_an_htmx_request_gets_only_the_timeline_section(agent_client, story):
    response = agent_client.get(reverse("order-detail", args=[story.pk]), headers={"HX-Request": "true"})

    page = response.content.decode().strip()
    assert page.startswith('<div id="order-timeline">')
    assert "<html" not in page
    assert "ws-connect" not in page
    assert "In transit" in page


def test_the_live_refresh_fragment_refetches_the_timeline_out_of_band(story):
    from django.template.loader import render_to_string

    url = reverse("order-detail", args=[story.pk])
    fragment = render_to_string("timeline/_live_refresh.html", {"url": url})

    assert 'id="live-refresh"' in fragment
    assert 'hx-swap-oob="true"' in fragment
    assert f'hx-get="{url}"' in fragment
    assert 'hx-target="#order-timeline"' in fragment


def test_order_page_query_count_is_flat(agent_client, story, apply, django_assert_max_num_queries):
    url = reverse("order-detail", args=[story.pk])
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
    scans = [
        event(f"t-{i}", "shipment.in_transit", 70 - i, ref("shipment", f"SH-X{i % 5}"), location={"city": "Lyon"})
        for i in range(60)
    ]
    apply(*scans, partner="UPSN", channel="hook")

    with django_assert_max_num_queries(14):  # two of them read the permissions behind the trace links
        response = agent_client.get(url)

    assert text(response).count('<li class="event') == 71


def test_an_unknown_order_is_a_404(agent_client):
    assert agent_client.get(reverse("order-detail", args=[999_999])).status_code == 404


def test_staff_see_the_admin_link_and_everyone_a_sign_out_form(client, django_user_model, user):
    client.force_login(user)
    page = text(client.get("/search/"))
    assert 'action="/logout/" method="post"' in page
    assert 'href="/admin/"' not in page

    client.force_login(UserFactory(username="boss", is_staff=True, permissions=["timeline.view_order"]))
    assert 'href="/admin/"' in text(client.get("/search/"))


def test_money_shows_amount_and_currency_or_a_dash():
    from decimal import Decimal

    from apps.timeline.templatetags.timeline_format import money

    assert money(Decimal("1234.5"), "EUR") == "1,234.50 EUR"
    assert money(None, "EUR") == "—"

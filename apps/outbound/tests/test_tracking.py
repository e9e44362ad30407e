"""Tracking links: the public page shows one order, customer milestones only; staff make and revoke links."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from apps.exceptions.models import ExceptionCase
from apps.outbound.models import TrackingLink
from apps.outbound.tracking import (
    tracking_link_create,
    tracking_link_for_order,
    tracking_link_resolve,
    tracking_link_revoke,
    tracking_url,
)
from apps.partners.models import Partner
from apps.timeline.models import Order
from apps.timeline.services import apply_events
from tests.factories import ExceptionCaseFactory, PartnerFactory, TrackingLinkFactory, UserFactory
from tests.stories import at, carrier, event, events, manifested, order_created, ref

pytestmark = pytest.mark.django_db

INVALID = "This tracking link is not valid any more"
MANAGE = ["outbound.view_trackinglink", "outbound.add_trackinglink", "outbound.change_trackinglink"]


@pytest.fixture
def partners() -> dict[str, Partner]:
    return {
        "ACME": PartnerFactory(code="ACME", name="Acme Retail", time_zone="Europe/Paris"),
        "GLOBEX": PartnerFactory(code="GLOBEX", name="Globex", time_zone="UTC"),
        "ERP": PartnerFactory(code="ERP", name="Secret ERP Source", kind=Partner.Kind.ERP),
        "UPSN": PartnerFactory(code="UPSN", name="UPS", kind=Partner.Kind.CARRIER),
        "DCLYON": PartnerFactory(code="DCLYON", name="Hidden Warehouse", kind=Partner.Kind.WAREHOUSE),
    }


def created(number: str, customer: str = "ACME") -> dict:
    return order_created(number, order={"customer": customer, "promised_at": at(96)})


@pytest.fixture
def order(partners) -> Order:
    """SO-1 of ACME: shipped, in transit, delayed, invoiced, held and released with a note, a freight
    bill and an open case. SO-2 (ACME) and SO-3 (GLOBEX) are other orders nobody should see."""
    apply_events(events(created("SO-1"), created("SO-2"), created("SO-3", "GLOBEX"), partner="ERP"))
    apply_events(
        events(
            event(
                "SO-1-picked", "order.picked", 5, ref("order", "SO-1"), location={"name": "Hidden DC", "city": "Lyon"}
            ),
            manifested("SH-1", "1ZAAA", "SO-1", attributes={"carrier": "UPSN", "warehouse": "DCLYON"}),
            manifested("SH-2", "1ZOTHER2", "SO-2", attributes={"carrier": "UPSN"}),
            manifested("SH-3", "1ZOTHER3", "SO-3", attributes={"carrier": "UPSN"}),
            partner="DCLYON",
        )
    )
    apply_events(
        events(
            carrier("1ZAAA", "shipment.in_transit", 20, location={"name": "Hub 7", "city": "Paris", "country": "FR"}),
            carrier("1ZAAA", "shipment.delayed", 22, attributes={"reason": "Weather", "note": "driver-sick-secret"}),
            carrier("1ZAAA", "shipment.eta_updated", 23, estimated_delivery_at=at(110)),
            event("fb-1", "freight.charge_posted", 24, ref("shipment", "SH-1"), ref("pro", "FB-SECRET"), amount="99"),
            partner="UPSN",
        )
    )
    apply_events(
        events(
            event("inv-1", "invoice.generated", 30, ref("invoice", "INV-1"), ref("order", "SO-1"), amount="60"),
            event(
                "inv-1-held",
                "invoice.held",
                31,
                ref("invoice", "INV-1"),
                ref("order", "SO-1"),
                attributes={"reason": "quantity-variance-secret"},
            ),
            event(
                "inv-1-rel",
                "invoice.released",
                32,
                ref("invoice", "INV-1"),
                ref("order", "SO-1"),
                attributes={"released_by": "finance-person", "note": "internal-note-secret"},
            ),
            partner="ERP",
        )
    )
    so1 = Order.objects.get(number="SO-1")
    ExceptionCaseFactory(order=so1, summary="CASE-SUMMARY-SECRET")
    return so1


@pytest.fixture
def link(order) -> TrackingLink:
    return tracking_link_create(order=order, actor=None)


def page(client, token: str):
    return client.get(reverse("track", kwargs={"token": token}))


def test_the_public_page_shows_the_order_without_a_sign_in(client, link):
    response = page(client, link.token)

    assert response.status_code == 200
    content = response.content.decode()
    for shown in (
        "Order SO-1",
        "Shipped",
        "SH-1",
        "UPS",
        "1ZAAA",
        "In transit",
        "Paris, FR",
        "Delayed",
        "Reason: Weather",
        "Invoice issued",
        "Picked",
        "Order received",
        "Estimated delivery",
    ):
        assert shown in content, shown
    assert "Europe/Paris" in content


def test_the_public_page_shows_nothing_internal_and_nothing_of_other_orders(client, link):
    content = page(client, link.token).content.decode()

    assert ExceptionCase.objects.filter(order=link.order).exists()
    hidden = (
        "SO-2",
        "SO-3",
        "SH-2",
        "SH-3",
        "1ZOTHER",  # other orders, of the same and of another customer
        "internal-note-secret",
        "finance-person",
        "quantity-variance-secret",
        "driver-sick-secret",  # notes
        "Invoice held",
        "Invoice released",
        "Freight",
        "FB-SECRET",
        "99.00",  # holds and freight
        "CASE-SUMMARY-SECRET",  # cases
        "Secret ERP Source",
        "Hidden Warehouse",
        "Hidden DC",
        "Hub 7",  # sources and internal sites
        "New delivery estimate",
        "trace",
    )
    for secret in hidden:
        assert secret not in content, secret


def test_the_page_is_not_cached_indexed_or_referred_and_counts_views(client, link):
    response = page(client, link.token)
    page(client, link.token)

    assert response["Cache-Control"] == "no-store"
    assert "noindex" in response["X-Robots-Tag"]
    assert response["Referrer-Policy"] == "no-referrer"
    link.refresh_from_db()
    assert link.views == 2
    assert link.last_viewed_at is not None


def test_unknown_revoked_and_expired_links_all_look_the_same(client, order, link):
    expired = TrackingLinkFactory(order=order, expires_at=timezone.now() - timedelta(minutes=1))
    tracking_link_revoke(link=link, actor=None)

    responses = [page(client, token) for token in ("no-such-token", link.token, expired.token, "x" * 300)]

    assert [r.status_code for r in responses] == [404] * 4
    assert len({r.content for r in responses}) == 1
    body = responses[0].content.decode()
    assert INVALID in body
    assert "SO-1" not in body
    assert all(r["Cache-Control"] == "no-store" for r in responses)
    link.refresh_from_db()
    expired.refresh_from_db()
    assert (link.views, expired.views) == (0, 0)


def test_the_resolver_accepts_only_live_links(order, link):
    assert tracking_link_resolve(link.token).order == order
    assert tracking_link_resolve(link.token, now=link.expires_at) is None
    assert tracking_link_resolve("") is None


def test_the_public_page_runs_a_fixed_number_of_queries(client, order, link, django_assert_max_num_queries):
    with django_assert_max_num_queries(4):
        small = page(client, link.token)
    for n in range(8):
        apply_events(
            events(manifested(f"SH-X{n}", f"1ZX{n}", "SO-1"), carrier(f"1ZX{n}", "shipment.delivered", 40 + n))
        )

    with django_assert_max_num_queries(4):
        large = page(client, link.token)

    assert large.content.decode().count("shipment SH-X") > small.content.decode().count("shipment SH-X")


def test_e_mails_reuse_a_link_with_enough_validity_left(order, settings):
    settings.TRACKING_LINK_DAYS = 30
    now = timezone.now()
    TrackingLinkFactory(order=order, expires_at=now + timedelta(days=3))  # about to expire
    TrackingLinkFactory(order=order, expires_at=now + timedelta(days=90), revoked_at=now)  # revoked

    made = tracking_link_for_order(order_id=order.pk, now=now)
    again = tracking_link_for_order(order_id=order.pk, now=now)

    assert made == again
    assert made.created_by is None
    assert made.expires_at == now + timedelta(days=30)
    assert TrackingLink.objects.filter(order=order).count() == 3


def test_links_are_valid_for_a_bounded_number_of_days(order):
    with pytest.raises(ValueError, match="1 to 365 days"):
        tracking_link_create(order=order, actor=None, days=0)
    link = tracking_link_create(order=order, actor=None, days=7)
    assert timedelta(days=6, hours=23) < link.expires_at - timezone.now() <= timedelta(days=7)


def test_a_link_is_revoked_once(order, link):
    user = UserFactory()

    assert tracking_link_revoke(link=link, actor=user) is True
    first = link.revoked_at
    assert tracking_link_revoke(link=link, actor=None) is False
    link.refresh_from_db()
    assert (link.revoked_at, link.revoked_by) == (first, user)


# --- staff: the links fragment on the order page ----------------------------------------------


def fragment_url(order: Order) -> str:
    return reverse("order-tracking-links", kwargs={"order_id": order.pk})


def create_url(order: Order) -> str:
    return reverse("tracking-link-create", kwargs={"order_id": order.pk})


def revoke_url(link: TrackingLink) -> str:
    return reverse("tracking-link-revoke", kwargs={"pk": link.pk})


def test_an_outsider_can_neither_see_create_nor_revoke(client, order, link):
    client.force_login(UserFactory())

    assert client.get(fragment_url(order)).status_code == 403
    assert client.post(create_url(order), {"days": 5}).status_code == 403
    assert client.post(revoke_url(link)).status_code == 403
    link.refresh_from_db()
    assert link.revoked_at is None
    assert TrackingLink.objects.count() == 1


def test_anonymous_visitors_are_sent_to_sign_in(client, order, link):
    response = client.get(fragment_url(order))

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))
    assert client.post(revoke_url(link)).status_code == 302


def test_a_viewer_sees_the_links_with_their_full_address_but_no_buttons(client, order, link):
    client.force_login(UserFactory(permissions=["outbound.view_trackinglink"]))

    response = client.get(fragment_url(order))

    content = response.content.decode()
    assert response.status_code == 200
    assert tracking_url(link) in content
    assert "Create link" not in content
    assert "Revoke" not in content
    assert client.post(create_url(order), {"days": 5}).status_code == 403


def test_a_manager_creates_a_link(client, order):
    user = UserFactory(permissions=MANAGE)
    client.force_login(user)

    response = client.post(create_url(order), {"days": 10}, headers={"HX-Request": "true"})

    link = TrackingLink.objects.get()
    assert response.status_code == 200
    assert (link.order, link.created_by) == (order, user)
    assert timedelta(days=9) < link.expires_at - timezone.now() <= timedelta(days=10)
    content = response.content.decode()
    assert tracking_url(link) in content
    assert user.username in content
    assert "Link created" in content


def test_a_bad_validity_creates_nothing(client, order):
    client.force_login(UserFactory(permissions=MANAGE))

    response = client.post(create_url(order), {"days": 1000}, headers={"HX-Request": "true"})

    assert response.status_code == 200
    assert "less than or equal to 365" in response.content.decode()
    assert not TrackingLink.objects.exists()


def test_a_manager_revokes_a_link_and_it_stops_working(client, order, link):
    user = UserFactory(permissions=MANAGE)
    client.force_login(user)

    response = client.post(revoke_url(link), headers={"HX-Request": "true"})

    assert response.status_code == 200
    assert "Revoked" in response.content.decode()
    link.refresh_from_db()
    assert link.revoked_by == user
    client.logout()
    assert page(client, link.token).status_code == 404


def test_without_htmx_the_forms_go_back_to_the_order(client, order):
    client.force_login(UserFactory(permissions=MANAGE))

    response = client.post(create_url(order), {"days": 3})

    assert response.status_code == 302
    assert response["Location"] == reverse("order-detail", kwargs={"pk": order.pk})


def test_the_order_page_loads_the_fragment_only_for_people_who_may_see_links(client, order):
    client.force_login(UserFactory(permissions=["timeline.view_order"]))
    assert fragment_url(order) not in client.get(reverse("order-detail", kwargs={"pk": order.pk})).content.decode()

    client.force_login(UserFactory(permissions=["timeline.view_order", "outbound.view_trackinglink"]))
    content = client.get(reverse("order-detail", kwargs={"pk": order.pk})).content.decode()
    assert f'hx-get="{fragment_url(order)}"' in content

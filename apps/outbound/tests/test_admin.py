"""Admin: subscriptions configured with kinds and regions as text, the model's rules reported on the
fields; deliveries read and replayed; breakers closed by hand."""

import re
from datetime import timedelta
from html import unescape

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone

from apps.exceptions.roles import roles_ensure
from apps.outbound.models import Delivery, DeliveryAttempt, Endpoint, Subscription
from apps.outbound.services import endpoint_of
from apps.partners.models import Partner
from tests.factories import (
    ChannelFactory,
    DeliveryFactory,
    EdiIdentifierFactory,
    PartnerFactory,
    SubscriptionFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db
ADD = "/admin/outbound/subscription/add/"
LIST = "/admin/outbound/subscription/"


def page_text(response) -> str:
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", response.content.decode())).split())


@pytest.fixture
def admin(client) -> Client:
    client.force_login(get_user_model().objects.create_superuser("root", "root@example.com", "x"))
    return client


def integration_admin() -> Client:
    user = UserFactory(is_staff=True)
    user.groups.add(roles_ensure()["Integration Admin"])
    client = Client()
    client.force_login(user)
    return client


def form_data(partner: Partner, **fields) -> dict:
    return {
        "partner": partner.pk,
        "name": "ERP shipment feed",
        "channel": "",
        "target_url": "https://erp.example.com/hooks/control-tower",
        "event_kinds": "shipment.delivered, order.*\ninvoice.generated",
        "format": "json",
        "active": "on",
        "regions": "",
        "max_attempts": 8,
        "timeout_seconds": 10,
        **fields,
    }


def test_adding_a_subscription_reads_kinds_and_regions_as_text_and_sets_its_endpoint(admin):
    erp = PartnerFactory(code="ERP1", kind=Partner.Kind.ERP)
    acme = PartnerFactory(code="ACME", kind=Partner.Kind.CUSTOMER)

    response = admin.post(ADD, form_data(erp, regions="EU-West,\nNA-East\n\n", customers=[acme.pk]))

    assert response.status_code == 302, page_text(response)
    subscription = Subscription.objects.get()
    assert subscription.event_kinds == ["shipment.delivered", "order.*", "invoice.generated"]
    assert subscription.regions == ["EU-West", "NA-East"]
    assert list(subscription.customers.all()) == [acme]
    assert subscription.endpoint.key == "https://erp.example.com:443"
    assert len(subscription.secret) >= 32


def test_the_models_rules_are_shown_on_their_fields(admin):
    erp = PartnerFactory(code="ERP1", kind=Partner.Kind.ERP)
    other = ChannelFactory(partner=PartnerFactory(code="WMS1", kind=Partner.Kind.WAREHOUSE))

    bad_kind = page_text(admin.post(ADD, form_data(erp, event_kinds="shipment.teleported")))
    x12 = page_text(admin.post(ADD, form_data(erp, event_kinds="invoice.generated", format="x12")))
    nowhere = page_text(admin.post(ADD, form_data(erp, target_url="")))
    foreign = page_text(admin.post(ADD, form_data(erp, channel=other.pk)))
    nothing = page_text(admin.post(ADD, form_data(erp, event_kinds=" , ")))

    assert "'shipment.teleported' is neither an event kind nor a wildcard such as shipment.*" in bad_kind
    assert "X12 needs the partner's EDI interchange id" in x12
    assert "Give a target URL, or a channel whose outbox folder receives the documents." in nowhere
    assert "The channel must be one of this partner's." in foreign
    assert "Choose at least one event kind (or 997 acknowledgments)." in nothing
    assert not Subscription.objects.exists()


def test_an_x12_subscription_for_a_partner_with_an_edi_id_is_saved(admin):
    erp = PartnerFactory(code="ERP1", kind=Partner.Kind.ERP)
    EdiIdentifierFactory(partner=erp)
    outbox = ChannelFactory(partner=erp, code="edi-out", direction="outbound", format="x12")

    response = admin.post(
        ADD,
        form_data(
            erp, event_kinds="invoice.generated", format="x12", acknowledgments="on", target_url="", channel=outbox.pk
        ),
    )

    assert response.status_code == 302, page_text(response)
    subscription = Subscription.objects.get()
    assert subscription.endpoint.key.startswith("folder:")
    assert subscription.endpoint.key.endswith("ERP1/edi-out")


def test_the_change_page_shows_kinds_as_lines_and_the_secret_masked_with_its_use(admin):
    subscription = SubscriptionFactory(event_kinds=["shipment.*", "order.released"], regions=["EU-West"])

    page = admin.get(f"{LIST}{subscription.pk}/change/").content.decode()
    add_page = page_text(admin.get(ADD))

    assert "shipment.*\norder.released</textarea>" in page
    assert "EU-West</textarea>" in page
    assert subscription.secret not in page
    assert f"…{subscription.secret[-4:]}" in page
    assert "Receivers verify each delivery with this secret" in unescape(page)
    assert 'class="selectfilter"' in page  # customers: filter_horizontal
    assert "Generated when you save" in add_page


def test_changing_the_target_moves_the_subscription_to_another_endpoint(admin):
    subscription = SubscriptionFactory(target_url="https://old.example.com/hooks")
    partner = subscription.partner

    admin.post(f"{LIST}{subscription.pk}/change/", form_data(partner, target_url="https://new.example.com:8443/in"))

    subscription.refresh_from_db()
    assert subscription.endpoint.key == "https://new.example.com:8443"


def test_rotating_secrets_gives_each_subscription_a_new_one(admin):
    first, second = SubscriptionFactory(), SubscriptionFactory()
    before = {first.pk: first.secret, second.pk: second.secret}

    response = admin.post(LIST, {"action": "rotate_secret", "_selected_action": [first.pk, second.pk]}, follow=True)

    after = dict(Subscription.objects.values_list("pk", "secret"))
    assert "2 secret(s) rotated" in page_text(response)
    assert after[first.pk] != before[first.pk]
    assert after[second.pk] != before[second.pk]
    assert after[first.pk] != after[second.pk]


def test_the_list_shows_target_kinds_and_circuit_in_flat_queries(admin, django_assert_max_num_queries):
    open_endpoint = Endpoint.objects.create(key="https://down.example.com:443", state=Endpoint.State.OPEN)
    SubscriptionFactory(name="Down", endpoint=open_endpoint, target_url="https://down.example.com/in")
    SubscriptionFactory(name="Folder", target_url="", channel=None, acknowledgments=True, event_kinds=[])
    for _ in range(20):
        SubscriptionFactory()

    with django_assert_max_num_queries(12):
        response = admin.get(LIST)

    text = page_text(response)
    assert "https://down.example.com/in" in text
    assert "Open" in text
    assert "outbox folder" in text
    assert "997" in text
    assert "Closed (nothing sent yet)" in text
    assert admin.get(LIST, {"q": "Down", "endpoint__state": "open"}).status_code == 200


# --- deliveries and endpoints -------------------------------------------------------------------------


def test_a_delivery_is_read_only_with_its_attempts(admin):
    delivery = DeliveryFactory(status=Delivery.Status.DEAD, attempts=1)
    DeliveryAttempt.objects.create(
        delivery=delivery,
        number=1,
        started_at=timezone.now(),
        outcome="dead",
        status_code=410,
        error="HTTP 410",
        request_headers={"X-Signature": "sha256=feed", "Idempotency-Key": str(delivery.idempotency_key)},
        request_body='{"kind": "shipment.delivered"}',
        response_body="gone",
    )

    listing = admin.get("/admin/outbound/delivery/", {"status": "dead"})
    page = admin.get(f"/admin/outbound/delivery/{delivery.pk}/change/")

    assert listing.status_code == 200
    assert f"#{delivery.pk}" in page_text(page) or str(delivery.pk) in page_text(page)
    assert "sha256=feed" in page_text(page)
    assert "gone" in page_text(page)
    assert "Save" not in page_text(page).replace("Save as", "")
    assert admin.get("/admin/outbound/delivery/add/").status_code == 403


def test_replaying_dead_letters_from_the_admin_sends_them(receiver, django_capture_on_commit_callbacks):
    client = integration_admin()
    subscription = SubscriptionFactory(target_url=receiver.url)
    dead = DeliveryFactory(subscription=subscription, status=Delivery.Status.DEAD, attempts=8)
    delivered = DeliveryFactory(subscription=subscription, status=Delivery.Status.DELIVERED)

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            "/admin/outbound/delivery/", {"action": "replay", "_selected_action": [dead.pk, delivered.pk]}, follow=True
        )

    assert "1 delivery(ies) queued to send again (1 not dead, left as they were)." in page_text(response)
    dead.refresh_from_db()
    assert dead.status == Delivery.Status.DELIVERED
    assert receiver.keys() == [str(dead.idempotency_key)]
    assert Delivery.objects.get(pk=delivered.pk).attempts == 0


def test_only_replayers_are_offered_the_replay_action(django_user_model):
    viewer = UserFactory(is_staff=True, permissions=["outbound.view_delivery", "outbound.view_endpoint"])
    client = Client()
    client.force_login(viewer)
    DeliveryFactory(status=Delivery.Status.DEAD)

    assert 'value="replay"' not in client.get("/admin/outbound/delivery/").content.decode()
    assert 'value="close_breaker"' not in client.get("/admin/outbound/endpoint/").content.decode()
    assert 'value="replay"' in integration_admin().get("/admin/outbound/delivery/").content.decode()


def test_closing_a_breaker_sends_what_waited(admin, receiver, django_capture_on_commit_callbacks):
    now = timezone.now()
    subscription = SubscriptionFactory(target_url=receiver.url)
    endpoint = endpoint_of(subscription)
    Endpoint.objects.filter(pk=endpoint.pk).update(
        state=Endpoint.State.OPEN, failures=5, retry_at=now + timedelta(minutes=5)
    )
    waiting = DeliveryFactory(subscription=subscription, next_attempt_at=now + timedelta(minutes=5))

    with django_capture_on_commit_callbacks(execute=True):
        response = admin.post(
            "/admin/outbound/endpoint/", {"action": "close_breaker", "_selected_action": [endpoint.pk]}, follow=True
        )

    assert "1 waiting delivery(ies) are being sent" in page_text(response)
    endpoint.refresh_from_db()
    assert (endpoint.state, endpoint.failures) == (Endpoint.State.CLOSED, 0)
    assert Delivery.objects.get(pk=waiting.pk).status == Delivery.Status.DELIVERED
    assert receiver.keys() == [str(waiting.idempotency_key)]


def test_an_integration_admin_configures_subscriptions_and_customer_service_cannot():
    client = integration_admin()
    erp = PartnerFactory(code="ERP1", kind=Partner.Kind.ERP)
    agent = UserFactory(is_staff=True)
    agent.groups.add(roles_ensure()["Customer Service"])
    outsider = Client()
    outsider.force_login(agent)

    assert client.get(ADD).status_code == 200
    assert client.post(ADD, form_data(erp)).status_code == 302
    assert client.get("/admin/outbound/endpoint/").status_code == 200
    assert client.get("/admin/outbound/outboundevent/").status_code == 200
    assert outsider.get(LIST).status_code == 403


def test_an_integration_admin_sets_how_many_requests_an_endpoint_takes_at_once():
    subscription = SubscriptionFactory(target_url="https://erp.example.com/hooks")
    endpoint = endpoint_of(subscription)
    Endpoint.objects.filter(pk=endpoint.pk).update(state=Endpoint.State.OPEN, failures=5)
    page = f"/admin/outbound/endpoint/{endpoint.pk}/change/"
    client = integration_admin()

    refused = [client.post(page, {"max_in_flight": value}) for value in (0, 65)]
    saved = client.post(page, {"max_in_flight": 32})

    assert [response.status_code for response in refused] == [200, 200]
    assert "greater than or equal to 1" in page_text(refused[0])
    assert "less than or equal to 64" in page_text(refused[1])
    assert saved.status_code == 302
    endpoint.refresh_from_db()
    # The breaker's fields stay as the senders left them.
    assert (endpoint.max_in_flight, endpoint.state, endpoint.failures) == (32, Endpoint.State.OPEN, 5)

"""``/api/v1/subscriptions/`` and ``/api/v1/deliveries/replay/``: staff with model permissions only."""

import pytest
from django.test import Client

from apps.exceptions.roles import roles_ensure
from apps.outbound.models import Delivery, Endpoint, Subscription
from apps.partners.models import Partner
from apps.partners.services import api_token_create
from tests.factories import (
    ChannelFactory,
    DeliveryFactory,
    EdiIdentifierFactory,
    OrderFactory,
    PartnerFactory,
    SubscriptionFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db
URL = "/api/v1/subscriptions/"
REPLAY = "/api/v1/deliveries/replay/"


def person(*permissions: str) -> Client:
    client = Client()
    client.force_login(UserFactory(permissions=list(permissions)))
    return client


@pytest.fixture
def api() -> Client:
    """An integration admin: every subscription permission and replay."""
    user = UserFactory()
    user.groups.add(roles_ensure()["Integration Admin"])
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def erp() -> Partner:
    return PartnerFactory(code="ERP1", name="Acme ERP", kind=Partner.Kind.ERP)


def body(**fields) -> dict:
    return {
        "partner": "ERP1",
        "name": "Shipment events",
        "target_url": "https://erp.example.com/hooks/control-tower",
        "event_kinds": ["shipment.*", "order.released"],
        **fields,
    }


def post(client: Client, url: str, data: dict):
    return client.post(url, data, content_type="application/json")


# --- who may ---------------------------------------------------------------------------------------------


def test_anonymous_partner_tokens_and_people_without_permissions_are_refused(client, erp):
    subscription = SubscriptionFactory(partner=erp)
    _, raw = api_token_create(partner=erp, name="erp")
    token = {"HTTP_AUTHORIZATION": f"Bearer {raw}"}
    nobody = person("timeline.view_order")

    assert client.get(URL).status_code == 401
    assert client.get(URL, **token).status_code == 403
    assert client.get(f"{URL}{subscription.pk}/deliveries/", **token).status_code == 403
    assert client.post(URL, body(), content_type="application/json", **token).status_code == 403
    assert client.post(REPLAY, {"ids": [1]}, content_type="application/json", **token).status_code == 403
    assert client.post(f"{URL}{subscription.pk}/rotate-secret/", **token).status_code == 403
    assert nobody.get(URL).status_code == 403
    assert nobody.get(f"{URL}{subscription.pk}/").status_code == 403


def test_a_viewer_reads_but_changes_nothing(erp):
    subscription = SubscriptionFactory(partner=erp)
    viewer = person("outbound.view_subscription")

    assert viewer.get(URL).status_code == 200
    assert viewer.get(f"{URL}{subscription.pk}/deliveries/").status_code == 200
    assert post(viewer, URL, body()).status_code == 403
    assert (
        viewer.patch(f"{URL}{subscription.pk}/", {"active": False}, content_type="application/json").status_code == 403
    )
    assert viewer.delete(f"{URL}{subscription.pk}/").status_code == 403
    assert viewer.post(f"{URL}{subscription.pk}/rotate-secret/").status_code == 403
    assert post(viewer, REPLAY, {"ids": [1]}).status_code == 403
    assert Subscription.objects.get(pk=subscription.pk).active


# --- create, read, change, delete ---------------------------------------------------------------------------


def test_create_answers_with_the_secret_once(api, erp):
    acme = PartnerFactory(code="ACME", kind=Partner.Kind.CUSTOMER)

    created = post(api, URL, body(customers=["ACME"], regions=["EU-West"], ordered=True, max_attempts=5))

    assert created.status_code == 201, created.json()
    data = created.json()
    subscription = Subscription.objects.get()
    assert data["secret"] == subscription.secret
    assert data["partner"] == "ERP1"
    assert data["event_kinds"] == ["shipment.*", "order.released"]
    assert data["customers"] == ["ACME"]
    assert data["regions"] == ["EU-West"]
    assert data["ordered"] is True
    assert data["max_attempts"] == 5
    assert data["format"] == "json"
    assert data["circuit"]["state"] == "closed"
    assert data["deliveries"] == {"pending": 0, "sending": 0, "delivered": 0, "dead": 0}
    assert list(subscription.customers.all()) == [acme]
    assert subscription.endpoint.key == "https://erp.example.com:443"
    read = api.get(f"{URL}{subscription.pk}/").json()
    assert "secret" not in read
    assert "secret" not in api.get(URL).json()["results"][0]


def test_invalid_input_gets_the_admins_field_errors(api, erp):
    PartnerFactory(code="CARRIER1", kind=Partner.Kind.CARRIER)
    ChannelFactory(partner=PartnerFactory(code="WMS1", kind=Partner.Kind.WAREHOUSE), code="out")

    cases = {
        "event_kinds": body(event_kinds=["shipment.teleported"]),
        "partner": body(partner="NOPE"),
        "target_url": body(target_url=""),
        "channel": body(channel="out"),
        "customers": body(customers=["CARRIER1"]),
        "acknowledgments": body(acknowledgments=True),
        "format": body(format="xml"),
        "max_attempts": body(max_attempts=0),
    }
    for field, data in cases.items():
        response = post(api, URL, data)
        assert response.status_code == 400, field
        assert field in response.json(), (field, response.json())

    x12 = post(api, URL, body(format="x12", event_kinds=["invoice.generated"])).json()
    assert x12["partner"] == ["X12 needs the partner's EDI interchange id (add one in the partner's EDI identifiers)."]
    assert "is neither an event kind" in post(api, URL, body(event_kinds=["nope"])).json()["event_kinds"][0]
    assert not Subscription.objects.exists()


def test_a_target_outside_the_allowed_hosts_is_refused(api, erp, settings):
    settings.OUTBOUND_ALLOWED_HOSTS = [".example.com", "erp.internal"]

    refused = post(api, URL, body(target_url="http://169.254.169.254/latest/meta-data"))
    allowed = [
        post(api, URL, body(target_url=url)) for url in ("https://hooks.example.com/in", "https://ERP.internal/")
    ]

    assert refused.status_code == 400
    assert refused.json()["target_url"] == [
        "'169.254.169.254' is not an allowed target host (OUTBOUND_ALLOWED_HOSTS: .example.com, erp.internal)."
    ]
    assert [response.status_code for response in allowed] == [201, 201]


def test_an_internal_or_plain_http_target_is_refused_with_the_reason(api, erp, settings):
    metadata = post(api, URL, body(target_url="https://169.254.169.254/latest/meta-data"))
    loopback = post(api, URL, body(target_url="https://localhost:8000/admin/"))
    plain = post(api, URL, body(target_url="http://erp.example.com/hooks"))
    settings.NETWORK_TRUSTED_TARGETS = ["10.20.0.0/16"]
    trusted = post(api, URL, body(target_url="https://10.20.0.5/hooks"))

    assert [r.status_code for r in (metadata, loopback, plain, trusted)] == [400, 400, 400, 201]
    assert metadata.json()["target_url"] == [
        "169.254.169.254 is a cloud metadata address; only NETWORK_TRUSTED_TARGETS may allow it."
    ]
    assert loopback.json()["target_url"][0].startswith("localhost resolves to 127.0.0.1, a loopback address")
    assert plain.json()["target_url"][0].startswith("plain http is refused outside development")
    assert Subscription.objects.get().target_url == "https://10.20.0.5/hooks"


def test_an_x12_subscription_to_an_outbox_folder(api, erp):
    EdiIdentifierFactory(partner=erp)
    ChannelFactory(partner=erp, code="edi-out", direction="outbound", format="x12")

    response = post(
        api,
        URL,
        body(format="x12", event_kinds=["invoice.generated"], acknowledgments=True, target_url="", channel="edi-out"),
    )

    assert response.status_code == 201, response.json()
    assert response.json()["channel"] == "edi-out"
    assert Subscription.objects.get().endpoint.key.startswith("folder:")


def test_patch_and_put_validate_the_result_and_the_endpoint_follows(api, erp):
    subscription = SubscriptionFactory(partner=erp, target_url="https://old.example.com/in")
    url = f"{URL}{subscription.pk}/"

    patched = api.patch(
        url, {"target_url": "https://new.example.com/in", "active": False}, content_type="application/json"
    )
    refused = api.patch(url, {"format": "x12"}, content_type="application/json")
    put = api.put(url, body(name="Renamed", event_kinds=["*"]), content_type="application/json")

    assert patched.status_code == 200
    assert patched.json()["active"] is False
    assert refused.status_code == 400
    assert "event_kinds" in refused.json()
    assert put.status_code == 200
    subscription.refresh_from_db()
    assert subscription.name == "Renamed"
    assert subscription.event_kinds == ["*"]
    assert subscription.endpoint.key == "https://erp.example.com:443"
    assert subscription.format == "json"


def test_delete(api, erp):
    subscription = SubscriptionFactory(partner=erp)
    DeliveryFactory(subscription=subscription)

    assert api.delete(f"{URL}{subscription.pk}/").status_code == 204
    assert not Subscription.objects.exists()
    assert not Delivery.objects.exists()


def test_rotating_the_secret_returns_the_new_one(api, erp):
    subscription = SubscriptionFactory(partner=erp)
    old = subscription.secret

    response = api.post(f"{URL}{subscription.pk}/rotate-secret/")

    assert response.status_code == 200
    subscription.refresh_from_db()
    assert response.json() == {"id": subscription.pk, "secret": subscription.secret}
    assert subscription.secret != old


def test_the_list_has_the_circuit_and_counts_in_flat_queries(api, erp, django_assert_max_num_queries):
    endpoint = Endpoint.objects.create(
        key="https://down.example.com:443", state="open", failures=5, last_error="HTTP 503"
    )
    down = SubscriptionFactory(partner=erp, endpoint=endpoint)
    for status in ("pending", "dead", "dead", "delivered"):
        DeliveryFactory(subscription=down, status=status)
    for _ in range(15):
        subscription = SubscriptionFactory()
        subscription.customers.add(PartnerFactory(kind=Partner.Kind.CUSTOMER))
        DeliveryFactory(subscription=subscription, status="delivered")

    with django_assert_max_num_queries(8):
        results = api.get(URL).json()["results"]

    assert len(results) == 16
    [row] = [r for r in results if r["id"] == down.pk]
    assert row["circuit"]["state"] == "open"
    assert row["circuit"]["failures"] == 5
    assert row["circuit"]["last_error"] == "HTTP 503"
    assert row["deliveries"] == {"pending": 1, "sending": 0, "delivered": 1, "dead": 2}


# --- deliveries and replay -------------------------------------------------------------------------------------


def test_deliveries_of_a_subscription_filtered_by_status(api, erp):
    subscription = SubscriptionFactory(partner=erp)
    order = OrderFactory(number="SO-1")
    dead = DeliveryFactory(subscription=subscription, status="dead", order=order, last_status_code=400)
    DeliveryFactory(subscription=subscription, status="delivered")
    DeliveryFactory(status="dead")  # another subscription's
    url = f"{URL}{subscription.pk}/deliveries/"

    everything = api.get(url).json()
    only_dead = api.get(url, {"status": "dead"}).json()

    assert everything["count"] == 2
    assert only_dead["count"] == 1
    [row] = only_dead["results"]
    assert row["id"] == dead.pk
    assert row["order"] == "SO-1"
    assert row["event_id"] == dead.event.event_id
    assert row["last_status_code"] == 400
    assert row["idempotency_key"] == str(dead.idempotency_key)
    assert api.get(url, {"status": "lost"}).status_code == 400
    assert api.get(f"{URL}999999/deliveries/").status_code == 404


def test_a_held_delivery_says_what_it_waits_for_in_flat_queries(api, erp, django_assert_max_num_queries):
    subscription = SubscriptionFactory(partner=erp, ordered=True)
    order = OrderFactory()
    earlier = DeliveryFactory(subscription=subscription, order=order, status="dead")
    held = DeliveryFactory(subscription=subscription, order=order, held_by=earlier)
    for _ in range(5):
        DeliveryFactory(subscription=subscription, order=order, held_by=earlier)
    url = f"{URL}{subscription.pk}/deliveries/"

    with django_assert_max_num_queries(8):
        rows = {row["id"]: row for row in api.get(url).json()["results"]}

    assert rows[held.pk]["waiting_for"] == earlier.pk
    assert rows[earlier.pk]["waiting_for"] is None


def test_replay_by_ids_sends_them_again(api, receiver, django_capture_on_commit_callbacks):
    subscription = SubscriptionFactory(target_url=receiver.url)
    dead = DeliveryFactory(subscription=subscription, status="dead", attempts=8)
    delivered = DeliveryFactory(subscription=subscription, status="delivered")

    with django_capture_on_commit_callbacks(execute=True):
        response = post(api, REPLAY, {"ids": [dead.pk, delivered.pk]})

    assert response.json() == {"replayed": 1}
    dead.refresh_from_db()
    assert dead.status == Delivery.Status.DELIVERED
    [received] = receiver.requests
    assert received.signature_valid(subscription.secret)
    assert received.headers["Idempotency-Key"] == str(dead.idempotency_key)


def test_replay_all_dead_of_one_subscription(api, django_capture_on_commit_callbacks):
    subscription = SubscriptionFactory()
    mine = [DeliveryFactory(subscription=subscription, status="dead") for _ in range(3)]
    theirs = DeliveryFactory(status="dead")

    with django_capture_on_commit_callbacks() as callbacks:
        response = post(api, REPLAY, {"all": True, "subscription": subscription.pk})

    assert response.json() == {"replayed": 3}
    assert len(callbacks) == 1
    assert {d.status for d in Delivery.objects.filter(pk__in=[d.pk for d in mine])} == {"pending"}
    assert Delivery.objects.get(pk=theirs.pk).status == "dead"


def test_replay_needs_ids_or_a_subscription(api):
    assert post(api, REPLAY, {}).status_code == 400
    assert "subscription" in post(api, REPLAY, {"all": True}).json()
    assert "subscription" in post(api, REPLAY, {"all": True, "subscription": 999999}).json()


def test_the_schema_documents_the_endpoints(api):
    paths = api.get("/api/schema/", {"format": "json"}).json()["paths"]

    assert "/api/v1/subscriptions/" in paths
    assert "/api/v1/subscriptions/{id}/deliveries/" in paths
    assert "/api/v1/subscriptions/{id}/rotate-secret/" in paths
    assert "/api/v1/deliveries/replay/" in paths

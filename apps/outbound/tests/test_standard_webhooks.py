"""Deliveries signed as Standard Webhooks specify, verified here with the ``standardwebhooks``
package exactly as a subscriber verifies them; the old headers where a subscription keeps them;
rotation signing with both secrets for the grace period."""

import base64
import json
from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone
from standardwebhooks import Webhook, WebhookVerificationError

from apps.outbound.models import Delivery, Subscription
from apps.outbound.services import deliveries_sweep, subscription_secret_rotate
from apps.partners.models import Partner
from apps.timeline.services import apply_events
from tests.factories import PartnerFactory, SubscriptionFactory
from tests.stories import events, manifested, order_created

pytestmark = pytest.mark.django_db


@pytest.fixture
def publish(django_capture_on_commit_callbacks):
    def run(order: str = "SO-1") -> None:
        with django_capture_on_commit_callbacks(execute=True):
            apply_events(events(order_created(order), manifested(f"SH-{order}", f"1Z{order}", order)))

    return run


def verified(secret: str, request) -> dict:
    return Webhook(secret).verify(request.body, request.headers)


def test_a_new_subscription_gets_a_whsec_secret_of_32_random_bytes():
    erp = PartnerFactory(kind=Partner.Kind.ERP)
    first, second = (Subscription.objects.create(partner=erp, name=name) for name in ("one", "two"))
    assert first.secret.startswith("whsec_")
    assert len(base64.b64decode(first.secret.removeprefix("whsec_"), validate=True)) == 32
    assert first.secret != second.secret


def test_a_delivery_verifies_with_the_standardwebhooks_package_and_the_subscription_secret(receiver, publish):
    subscription = SubscriptionFactory(target_url=receiver.url, event_kinds=["shipment.manifested"])

    publish()

    [request] = receiver.requests
    document = verified(subscription.secret, request)
    assert (document["kind"], document["orders"][0]["number"]) == ("shipment.manifested", "SO-1")
    delivery = Delivery.objects.get()
    assert request.headers["webhook-id"] == str(delivery.idempotency_key) == request.headers["Idempotency-Key"]
    assert "X-Signature" not in request.headers
    assert "X-Timestamp" not in request.headers
    with pytest.raises(WebhookVerificationError):
        Webhook(SubscriptionFactory.build().secret).verify(request.body, request.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(subscription.secret).verify(request.body.replace(b"SO-1", b"SO-2"), request.headers)


def test_subscriptions_sharing_an_endpoint_get_the_same_event_each_signed_with_their_own_secret(receiver, publish):
    subscriptions = [SubscriptionFactory(target_url=receiver.url, event_kinds=["shipment.*"]) for _ in range(2)]

    publish()

    first, second = receiver.requests
    assert first.body == second.body
    assert first.headers["webhook-id"] != second.headers["webhook-id"]
    signers = [[s.pk for s in subscriptions if _verifies(s.secret, request)] for request in (first, second)]
    assert sorted(signers) == [[s.pk] for s in subscriptions]


def _verifies(secret: str, request) -> bool:
    try:
        verified(secret, request)
    except WebhookVerificationError:
        return False
    return True


def test_a_retry_keeps_its_webhook_id_and_is_signed_afresh(receiver, publish, django_capture_on_commit_callbacks):
    subscription = SubscriptionFactory(target_url=receiver.url, event_kinds=["shipment.manifested"])
    receiver.answer_next(503)

    publish()
    later = timezone.now() + timedelta(hours=1)
    with time_machine.travel(later, tick=False):
        with django_capture_on_commit_callbacks(execute=True):
            deliveries_sweep()
        # The first attempt is now an hour old: a subscriber refuses it as a replay.
        first, second = receiver.requests
        with pytest.raises(WebhookVerificationError, match="too old"):
            verified(subscription.secret, first)
        verified(subscription.secret, second)
    assert first.headers["webhook-id"] == second.headers["webhook-id"]
    assert int(second.headers["webhook-timestamp"]) - int(first.headers["webhook-timestamp"]) >= 3600


def test_a_subscription_keeping_the_old_headers_gets_both_signatures(receiver, publish):
    subscription = SubscriptionFactory(target_url=receiver.url, legacy_signature=True)

    publish()

    [request] = receiver.requests
    verified(subscription.secret, request)
    assert request.legacy_signature_valid(subscription.secret)
    assert request.headers["X-Timestamp"] == request.headers["webhook-timestamp"]


def test_after_a_rotation_deliveries_verify_with_the_old_and_the_new_secret_until_the_grace_ends(
    receiver, publish, settings
):
    settings.SECRET_ROTATION_GRACE_SECONDS = 3600
    subscription = SubscriptionFactory(target_url=receiver.url, legacy_signature=True)
    old = subscription.secret
    new = subscription_secret_rotate(subscription=subscription)

    publish("SO-1")

    [during] = receiver.requests
    assert len(during.headers["webhook-signature"].split()) == 2
    verified(old, during)
    verified(new, during)
    assert during.legacy_signature_valid(new)  # one signature only: the new secret's
    assert not during.legacy_signature_valid(old)

    with time_machine.travel(timezone.now() + timedelta(seconds=3601), tick=False):
        publish("SO-2")
        after = receiver.requests[1]
        verified(new, after)
        with pytest.raises(WebhookVerificationError, match="No matching signature"):
            verified(old, after)
    assert len(after.headers["webhook-signature"].split()) == 1


def test_a_second_rotation_ends_the_grace_of_the_first_secret(receiver, publish):
    subscription = SubscriptionFactory(target_url=receiver.url)
    first = subscription.secret
    second = subscription_secret_rotate(subscription=subscription)
    third = subscription_secret_rotate(subscription=subscription)

    publish()

    [request] = receiver.requests
    verified(second, request)
    verified(third, request)
    with pytest.raises(WebhookVerificationError):
        verified(first, request)


def test_a_secret_the_receiver_chose_signs_with_its_own_bytes(receiver, publish):
    """A typed secret not written whsec_...: the package takes it as the base64 of its bytes."""
    subscription = SubscriptionFactory(target_url=receiver.url)
    typed = "a-secret-the-receiver-gave-us-0123"
    subscription_secret_rotate(subscription=subscription, secret=typed)

    publish()

    [request] = receiver.requests
    verified(base64.b64encode(typed.encode()).decode(), request)


@pytest.mark.parametrize("typed", ["whsec_not base64!", "whsec_"])
def test_a_malformed_whsec_secret_is_refused_and_the_current_one_kept(typed):
    subscription = SubscriptionFactory()
    before = subscription.secret

    with pytest.raises(ValueError, match="whsec_"):
        subscription_secret_rotate(subscription=subscription, secret=typed)

    subscription.refresh_from_db()
    assert (subscription.secret, subscription.secret_previous) == (before, "")


def test_the_attempt_log_keeps_the_signed_headers_as_sent(receiver, publish):
    SubscriptionFactory(target_url=receiver.url)

    publish()

    [request] = receiver.requests
    attempt = Delivery.objects.get().attempt_log.get()
    for name in ("webhook-id", "webhook-timestamp", "webhook-signature"):
        assert attempt.request_headers[name] == request.headers[name]
    assert json.loads(attempt.request_body) == json.loads(request.body)

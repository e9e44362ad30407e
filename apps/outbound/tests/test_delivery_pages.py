"""A subscription's delivery log, a page at a time: older and newer pages keep the status filter,
the refresh and a replay stay on the page shown, counts stop at the limit, and a link that cannot
be read starts again at the newest."""

import re
from html import unescape

import pytest
from django.test import Client
from django.urls import reverse

from apps.outbound.models import Delivery
from controltower import keyset
from tests.factories import DeliveryFactory, SubscriptionFactory, UserFactory

pytestmark = pytest.mark.django_db
HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def replayer() -> Client:
    client = Client()
    client.force_login(UserFactory(permissions=["outbound.view_subscription", "outbound.replay_delivery"]))
    return client


def shown(response) -> list[int]:
    return [int(pk) for pk in re.findall(r'<tr id="delivery-(\d+)"', response.content.decode())]


def link(response, url: str, rel: str) -> str:
    match = re.search(rf'<a href="\?([^"]*)" rel="{rel}">', response.content.decode())
    assert match, f"no {rel} link"
    return url + "?" + unescape(match.group(1))


def test_older_and_newer_pages_keep_the_status_filter(replayer):
    subscription = SubscriptionFactory()
    made = [DeliveryFactory(subscription=subscription, status="dead" if n % 3 else "delivered") for n in range(170)]
    DeliveryFactory(subscription=SubscriptionFactory(), status="dead")  # another subscription's
    dead = sorted((d.pk for d in made if d.status == "dead"), reverse=True)  # newest first: 113 of them
    url = reverse("subscription-detail", args=[subscription.pk])

    first = replayer.get(url, {"status": "dead"})
    second = replayer.get(link(first, url, "next"))
    third = replayer.get(link(second, url, "next"))
    back = replayer.get(link(third, url, "prev"))
    newest = replayer.get(link(back, url, "prev"))

    assert shown(first) == dead[:50]
    assert shown(second) == dead[50:100]
    assert shown(third) == dead[100:]
    assert 'rel="next"' not in third.content.decode()
    assert shown(back) == dead[50:100]
    assert shown(newest) == dead[:50]
    assert "status=dead" in link(third, url, "prev")
    assert "113 deliveries" in first.content.decode()


def test_the_refresh_and_a_replay_stay_on_the_page_shown(replayer, django_capture_on_commit_callbacks):
    subscription = SubscriptionFactory()
    made = [DeliveryFactory(subscription=subscription, status="dead") for _ in range(60)]
    url = reverse("subscription-detail", args=[subscription.pk])
    first = replayer.get(url, {"status": "dead"})
    cursor = first.context["page"].next_cursor
    second = replayer.get(url, {"status": "dead", "after": cursor})
    older = [d.pk for d in made[:10]][::-1]

    assert f'hx-get="{url}?status=dead&amp;after={cursor}"' in second.content.decode()
    assert shown(replayer.get(url, {"status": "dead", "after": cursor}, **HTMX)) == older
    with django_capture_on_commit_callbacks():
        replayed = replayer.post(
            reverse("deliveries-replay", args=[subscription.pk]),
            {"ids": [made[0].pk], "status": "dead", "after": cursor},
            **HTMX,
        )
    assert "1 delivery queued to send again." in replayed.content.decode()
    assert shown(replayed) == older[:-1]  # the replayed one is pending again: no longer a dead letter


def test_an_unreadable_cursor_shows_the_newest_page(replayer):
    subscription = SubscriptionFactory()
    made = [DeliveryFactory(subscription=subscription, status="pending") for _ in range(3)]
    url = reverse("subscription-detail", args=[subscription.pk])

    for cursor in ("not-a-cursor", "WyJ4Il0", "W1tdXQ", "x" * 2000):
        response = replayer.get(url, {"before": cursor})
        assert response.status_code == 200
        assert shown(response) == [d.pk for d in reversed(made)]
        assert "« First" not in response.content.decode()
        assert f'hx-get="{url}"' in response.content.decode()


def test_counts_stop_at_the_limit(replayer, monkeypatch):
    monkeypatch.setattr(keyset, "COUNT_LIMIT", 3)
    subscription = SubscriptionFactory()
    for status in ["dead"] * 5 + ["pending"] * 2:
        DeliveryFactory(subscription=subscription, status=status)

    page = re.sub(r"\s+", " ", replayer.get(reverse("subscription-detail", args=[subscription.pk])).content.decode())

    assert "2 pending · 0 sending · 0 delivered · 3+ dead" in page
    assert "Replay all dead (3+)" in page
    assert "3+ deliveries" in page
    assert Delivery.objects.filter(subscription=subscription).count() == 7

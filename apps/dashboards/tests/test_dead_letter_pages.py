"""The dead letter list, a page at a time: older and newer pages keep their filters, about how
many is shown (and capped), and a link that cannot be read starts again at the newest."""

import re
from datetime import timedelta
from html import unescape

import pytest
from django.urls import reverse
from django.utils import timezone

from apps.exceptions.roles import roles_ensure
from apps.ingest.models import InboundMessage
from apps.partners.models import Partner
from controltower import keyset
from tests.factories import ChannelFactory, InboundMessageFactory, PartnerFactory

pytestmark = pytest.mark.django_db
URL = reverse("dead-letters")


@pytest.fixture
def integration_admin(client, django_user_model):
    user = django_user_model.objects.create_user("integration")
    user.groups.add(roles_ensure()["Integration Admin"])
    client.force_login(user)
    return user


@pytest.fixture
def carrier() -> Partner:
    return PartnerFactory(code="UPSN", name="UPS", kind=Partner.Kind.CARRIER)


def dead(channel, *, minutes_ago: int, status: str = "dead", partner=None) -> InboundMessage:
    made = InboundMessageFactory(
        partner=partner or (channel.partner if channel else None), channel=channel, status=status, error="bad"
    )
    InboundMessage.objects.filter(pk=made.pk).update(received_at=timezone.now() - timedelta(minutes=minutes_ago))
    return made


def shown(response) -> list[int]:
    return [int(pk) for pk in re.findall(r'<tr id="message-(\d+)"', response.content.decode())]


def link(response, rel: str) -> str:
    match = re.search(rf'<a href="\?([^"]*)" rel="{rel}">', response.content.decode())
    assert match, f"no {rel} link"
    return URL + "?" + unescape(match.group(1))


def test_older_and_newer_pages_keep_the_channel_filter(client, integration_admin, carrier):
    feed = ChannelFactory(partner=carrier, code="feed")
    other = ChannelFactory(partner=carrier, code="other")
    mine = [dead(feed, minutes_ago=n) for n in range(1, 121)]  # newest first
    for n in range(1, 40):
        dead(other, minutes_ago=n)
    # Two received at the same moment: the id decides, and neither is skipped or shown twice.
    same = timezone.now() - timedelta(minutes=50, seconds=30)
    InboundMessage.objects.filter(pk__in=[mine[49].pk, mine[50].pk]).update(received_at=same)
    expected = list(
        InboundMessage.objects.filter(channel=feed).order_by("-received_at", "-id").values_list("pk", flat=True)
    )

    first = client.get(URL, {"channel": feed.pk})
    second = client.get(link(first, "next"))
    third = client.get(link(second, "next"))
    back = client.get(link(third, "prev"))

    assert shown(first) == expected[:50]
    assert shown(second) == expected[50:100]
    assert shown(third) == expected[100:]
    assert 'rel="next"' not in third.content.decode()
    assert shown(back) == expected[50:100]
    assert f"channel={feed.pk}" in link(back, "prev")
    assert "120 dead letters" in first.content.decode()


def test_pages_of_one_partner_and_of_unknown_senders(client, integration_admin, carrier):
    feed = ChannelFactory(partner=carrier, code="feed")
    elsewhere = ChannelFactory(partner=PartnerFactory(code="DHL"), code="feed")
    mine = [dead(feed, minutes_ago=n, status="failed" if n % 2 else "dead") for n in range(1, 56)]
    theirs = [dead(elsewhere, minutes_ago=n) for n in range(1, 10)]
    unknown = [dead(None, minutes_ago=n) for n in range(1, 4)]

    first = client.get(URL, {"partner": "UPSN"})
    second = client.get(link(first, "next"))

    assert shown(first) + shown(second) == [m.pk for m in mine]
    assert "partner=UPSN" in link(second, "prev")
    assert shown(client.get(URL, {"partner": "-"})) == [m.pk for m in unknown]
    assert shown(client.get(URL, {"partner": "DHL", "channel": elsewhere.pk})) == [m.pk for m in theirs]
    assert shown(client.get(URL, {"partner": "UPSN", "channel": elsewhere.pk})) == []


def test_an_unreadable_cursor_shows_the_newest_page(client, integration_admin, carrier):
    feed = ChannelFactory(partner=carrier, code="feed")
    made = [dead(feed, minutes_ago=n) for n in range(1, 4)]

    for cursor in ("not-a-cursor", "WyJub3QgYSBkYXRlIiwxXQ", "W10", "x" * 2000):
        response = client.get(URL, {"after": cursor, "channel": feed.pk})
        assert response.status_code == 200
        assert shown(response) == [m.pk for m in made]
        assert "« First" not in response.content.decode()


def test_the_count_stops_at_the_limit(client, integration_admin, carrier, monkeypatch):
    monkeypatch.setattr(keyset, "COUNT_LIMIT", 3)
    feed = ChannelFactory(partner=carrier, code="feed")
    for n in range(1, 6):
        dead(feed, minutes_ago=n)

    assert "3+ dead letters" in client.get(URL).content.decode()

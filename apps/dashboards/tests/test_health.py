"""Integration health per partner and channel, and the dead letter list with its replay."""

import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from apps.dashboards.health import duration_text, integration_health
from apps.exceptions.roles import roles_ensure
from apps.ingest.models import InboundMessage
from apps.partners.models import Channel, Partner
from tests.factories import ChannelFactory, InboundMessageFactory, OutboundMessageFactory, PartnerFactory

pytestmark = pytest.mark.django_db
H = timedelta(hours=1)
S = InboundMessage.Status


def text(response) -> str:
    return re.sub(r"\s+", " ", response.content.decode())


def message(
    channel: Channel | None,
    *,
    ago: timedelta,
    partner: Partner | None = None,
    status: str = S.PROCESSED,
    lag: timedelta | None = timedelta(seconds=30),
    **fields,
) -> InboundMessage:
    """A message received ``ago`` before now and processed ``lag`` after it arrived."""
    received = timezone.now() - ago
    created = InboundMessageFactory(
        partner=partner or (channel.partner if channel else None), channel=channel, status=status, **fields
    )
    processed = received + lag if lag is not None and status != S.RECEIVED else None
    InboundMessage.objects.filter(pk=created.pk).update(received_at=received, processed_at=processed)
    created.received_at, created.processed_at = received, processed
    return created


def row_of(rows, channel: Channel | None = None, *, partner: Partner | None = None):
    return next(r for r in rows if r.channel == channel and (channel or r.partner == partner))


@pytest.fixture
def carrier() -> Partner:
    return PartnerFactory(code="UPSN", name="UPS", kind=Partner.Kind.CARRIER)


def test_a_channel_quieter_than_its_cadence_is_flagged(carrier):
    hourly = ChannelFactory(partner=carrier, code="hourly", expected_cadence=H)
    lively = ChannelFactory(partner=carrier, code="lively", expected_cadence=H)
    silent = ChannelFactory(partner=carrier, code="silent", expected_cadence=H)
    casual = ChannelFactory(partner=carrier, code="casual")
    message(hourly, ago=3 * H)
    message(lively, ago=3 * H)
    message(lively, ago=0.5 * H)

    rows = integration_health(now=timezone.now())

    assert row_of(rows, hourly).quiet  # its last message is older than an hour
    assert not row_of(rows, lively).quiet
    assert row_of(rows, silent).quiet  # never sent at all
    assert not row_of(rows, casual).quiet  # no cadence: never quiet
    assert row_of(rows, hourly).last_message_at == InboundMessage.objects.filter(channel=hourly).get().received_at
    later = timezone.now() + 2 * H
    assert row_of(integration_health(now=later), lively).quiet  # two hours on, the lively one is quiet too
    assert [r.channel for r in rows[:2]] == [hourly, silent]  # problems first
    assert row_of(rows, hourly).problems == ["quiet"]


def test_failure_rate_lag_duplicates_and_throughput_over_the_last_day(carrier):
    feed = ChannelFactory(partner=carrier, code="feed")
    message(feed, ago=H, lag=timedelta(seconds=10), resent_count=2, duplicate_count=1)
    message(feed, ago=2 * H, lag=timedelta(seconds=50))
    message(feed, ago=3 * H, status=S.DEAD, lag=timedelta(seconds=30), error="bad")
    message(feed, ago=4 * H, status=S.RECEIVED, resent_count=1)
    message(feed, ago=30 * H, status=S.FAILED, resent_count=50)  # outside the window, still a dead letter

    row = row_of(integration_health(now=timezone.now()), feed)

    assert (row.messages, row.failed, row.failure_rate) == (4, 1, 0.25)
    assert row.per_hour == pytest.approx(4 / 24)
    assert row.lag == timedelta(seconds=30)  # the average of the processed ones
    assert row.lag_text == "30 s"
    assert row.duplicates == 4  # resent 2 + 1, plus one duplicate event
    assert row.dead_letters == 2  # dead now, whenever they arrived
    assert row.problems == ["failing", "dead letters"]


def test_unmapped_codes_and_missing_acknowledgments(carrier):
    edi = ChannelFactory(partner=carrier, code="edi", format=Channel.Format.X12)
    message(edi, ago=H, format="x12", unmapped_count=2, unmapped_codes=["X9", "ZZ"])
    message(edi, ago=2 * H, format="x12", unmapped_count=1, unmapped_codes=["X9"])
    acknowledged = message(edi, ago=3 * H, format="x12")
    OutboundMessageFactory(inbound=acknowledged, kind="997")
    other_ack = message(edi, ago=4 * H, format="x12")
    OutboundMessageFactory(inbound=other_ack, kind="ack")
    message(edi, ago=5 * H, format="x12", status=S.DEAD, error="unreadable")  # not processed: no 997 due
    message(edi, ago=6 * H, format="json")

    row = row_of(integration_health(now=timezone.now()), edi)

    assert (row.unmapped, row.unmapped_codes) == (3, ["X9", "ZZ"])
    assert row.missing_acks == 3  # two with unmapped codes, and the one answered with something else


def test_messages_without_a_channel_and_from_unknown_senders_get_their_own_rows(carrier):
    feed = ChannelFactory(partner=carrier, code="feed")
    message(feed, ago=H)
    message(None, partner=carrier, ago=2 * H)
    message(None, partner=None, ago=3 * H, status=S.DEAD, error="unknown sender ZZ:WHO")
    ChannelFactory(partner=carrier, code="old", active=False)
    ChannelFactory(partner=carrier, code="out", direction=Channel.Direction.OUTBOUND)

    rows = integration_health(now=timezone.now())

    assert {(r.partner.code if r.partner else None, r.channel.code if r.channel else None) for r in rows} == {
        ("UPSN", "feed"),
        ("UPSN", None),
        (None, None),
    }
    unknown = row_of(rows, None, partner=None)
    assert (unknown.messages, unknown.dead_letters, unknown.partner_filter, unknown.channel_filter) == (1, 1, "-", "-")
    assert row_of(rows, None, partner=carrier).messages == 1
    assert rows[0] is unknown


def test_durations_read_as_people_say_them():
    assert [duration_text(timedelta(seconds=s)) for s in (0.4, 12, 180, 7500, 97200)] == [
        "0.4 s",
        "12 s",
        "3 min",
        "2 h 5 min",
        "1 d 3 h",
    ]


def _health_queries(now) -> int:
    with CaptureQueriesContext(connection) as queries:
        integration_health(now=now)
    return len(queries)


def test_health_costs_a_fixed_number_of_queries(carrier, django_assert_max_num_queries):
    feed = ChannelFactory(partner=carrier, code="feed", expected_cadence=H)
    message(feed, ago=H, format="x12")
    message(None, partner=carrier, ago=H)
    baseline = _health_queries(timezone.now())

    for n in range(6):
        partner = PartnerFactory()
        for code in ("a", "b"):
            channel = ChannelFactory(partner=partner, code=code, expected_cadence=H)
            message(channel, ago=2 * H, format="x12", unmapped_count=1, unmapped_codes=[f"C{n}"])
            message(channel, ago=3 * H, status=S.DEAD, error="bad")
        message(None, partner=partner, ago=H)
    with django_assert_max_num_queries(baseline):
        rows = integration_health(now=timezone.now())
    assert len(rows) == 2 + 6 * 3


# --- pages --------------------------------------------------------------------------------------


@pytest.fixture
def integration_admin(client, django_user_model):
    user = django_user_model.objects.create_user("integration")
    user.groups.add(roles_ensure()["Integration Admin"])
    client.force_login(user)
    return user


def test_the_health_page_links_dead_letters_to_the_filtered_list(client, integration_admin, carrier):
    feed = ChannelFactory(partner=carrier, code="feed", name="UPS tracking", expected_cadence=H)
    message(feed, ago=5 * H, status=S.DEAD, error="no mapping")

    page = text(client.get(reverse("integration-health")))

    assert "UPS tracking" in page
    assert '<span class="badge problem problem-quiet">Quiet</span>' in page
    assert '<span class="badge problem problem-failing">Failing</span>' in page
    assert '<span class="badge problem problem-dead-letters">Dead letters</span>' in page
    assert "expected every 1 h" in page
    assert f'href="{reverse("dead-letters")}?partner=UPSN&amp;channel={feed.pk}">1</a>' in page


def test_the_health_page_costs_the_same_with_more_partners(
    client, integration_admin, carrier, django_assert_max_num_queries
):
    message(ChannelFactory(partner=carrier, code="feed"), ago=H)
    with CaptureQueriesContext(connection) as baseline:
        assert client.get(reverse("integration-health")).status_code == 200
    for _ in range(5):
        message(ChannelFactory(partner=PartnerFactory()), ago=H, status=S.DEAD, error="bad")
    with django_assert_max_num_queries(len(baseline)):
        assert client.get(reverse("integration-health")).status_code == 200


@pytest.mark.parametrize("name", ["integration-health", "dead-letters"])
def test_pages_need_the_view_permission(client, django_user_model, name):
    url = reverse(name)
    assert client.get(url).status_code == 302
    finance = django_user_model.objects.create_user("finance")
    finance.groups.add(roles_ensure()["Finance"])
    client.force_login(finance)
    assert client.get(url).status_code == 403
    reader = django_user_model.objects.create_user("reader")
    reader.user_permissions.add(Permission.objects.get(codename="view_inboundmessage"))
    client.force_login(reader)
    assert client.get(url).status_code == 200


def test_dead_letters_filter_by_partner_and_channel_newest_first(client, integration_admin, carrier):
    feed = ChannelFactory(partner=carrier, code="feed")
    other = ChannelFactory(partner=carrier, code="other")
    old = message(feed, ago=5 * H, status=S.DEAD, error="old reason")
    new = message(feed, ago=2 * H, status=S.FAILED, error="new reason")
    elsewhere = message(other, ago=3 * H, status=S.DEAD, error="other reason")
    unknown = message(None, ago=4 * H, status=S.DEAD, error="unknown sender ZZ:WHO")
    message(feed, ago=H)  # processed: not a dead letter

    def listed(**params) -> list[int]:
        response = client.get(reverse("dead-letters"), params)
        return [m.pk for m in response.context["page"].items]

    assert listed() == [new.pk, elsewhere.pk, unknown.pk, old.pk]
    assert listed(partner="UPSN", channel=feed.pk) == [new.pk, old.pk]
    assert listed(channel=other.pk) == [elsewhere.pk]
    assert listed(partner="-") == [unknown.pk]
    page = text(client.get(reverse("dead-letters"), {"channel": feed.pk}))
    assert "new reason" in page
    assert "other reason" not in page
    assert f'href="{reverse("message-trace", args=[new.pk])}"' in page
    assert "Replay all shown (2)" in page


def test_dead_letters_are_paginated_by_50(client, integration_admin, carrier):
    feed = ChannelFactory(partner=carrier, code="feed")
    for n in range(55):
        message(feed, ago=timedelta(minutes=n + 1), status=S.DEAD, error=f"reason {n}")

    first = client.get(reverse("dead-letters"))
    second = client.get(reverse("dead-letters"), {"after": first.context["page"].next_cursor})

    assert len(first.context["page"].items) == 50
    assert "55 dead letters" in text(first)
    assert len(second.context["page"].items) == 5
    assert "reason 54" in text(second)


def test_replay_all_shown_and_replay_by_filters(
    client, integration_admin, carrier, django_capture_on_commit_callbacks, monkeypatch
):
    queued = []
    monkeypatch.setattr("apps.ingest.services.enqueue_processing", lambda found: queued.extend(m.pk for m in found))
    feed = ChannelFactory(partner=carrier, code="feed")
    other = ChannelFactory(partner=carrier, code="other")
    a = message(feed, ago=H, status=S.DEAD, error="x")
    b = message(feed, ago=2 * H, status=S.FAILED, error="y")
    c = message(other, ago=H, status=S.DEAD, error="z")
    done = message(feed, ago=H)
    back = reverse("dead-letters") + f"?channel={feed.pk}"

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("messages-replay"), {"ids": [a.pk, done.pk], "next": back}, follow=True)
    assert response.redirect_chain == [(back, 302)]
    assert "1 message queued for replay." in text(response)
    assert queued == [a.pk]

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("messages-replay"), {"all": "on", "channel": feed.pk}, follow=True)
    assert "1 message queued for replay." in text(response)
    assert sorted(queued) == sorted([a.pk, b.pk])
    assert InboundMessage.objects.get(pk=c.pk).status == S.DEAD

    response = client.post(reverse("messages-replay"), {}, follow=True)
    assert "Choose the messages to replay." in text(response)


def test_replay_is_refused_without_the_permission(client, django_user_model, carrier):
    dead = message(ChannelFactory(partner=carrier), ago=H, status=S.DEAD, error="x")
    reader = django_user_model.objects.create_user("reader")
    reader.user_permissions.add(Permission.objects.get(codename="view_inboundmessage"))
    client.force_login(reader)

    assert client.post(reverse("messages-replay"), {"ids": [dead.pk]}).status_code == 403
    assert "Replay" not in text(client.get(reverse("dead-letters")))
    assert InboundMessage.objects.get(pk=dead.pk).status == S.DEAD


def test_the_channel_admin_sets_the_expected_cadence(admin_client, carrier):
    channel = ChannelFactory(partner=carrier, code="feed")
    url = reverse("admin:partners_channel_change", args=[channel.pk])
    form = admin_client.get(url).context["adminform"].form
    data = {name: form.initial.get(name) or "" for name in form.fields}
    data.update(partner=carrier.pk, active="on", mapping_overrides="{}", expected_cadence="02:00:00")

    response = admin_client.post(url, data)

    assert response.status_code == 302, response.context["adminform"].form.errors
    channel.refresh_from_db()
    assert channel.expected_cadence == timedelta(hours=2)
    assert "Expected cadence" in text(admin_client.get(reverse("admin:partners_channel_changelist")))

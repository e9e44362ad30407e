"""Webhook secrets and poll headers: generated, rotated with a grace period, masked."""

from datetime import UTC, datetime, timedelta

import pytest

from apps.partners.credentials import (
    channel_webhook_secret_set,
    poll_headers_masked,
    poll_headers_parse,
    secret_mask,
    webhook_secrets_accepted,
)
from apps.partners.models import Channel
from tests.factories import ChannelFactory

NOON = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("secret", "masked"),
    [
        ("whsec_AbCdEfGhIjKlMnOpQrStUvWx", "whsec_…UvWx"),
        ("a-partner-chose-this-long-secret", "…cret"),
        ("short-but-16char", "set"),
        ("", "not set"),
    ],
)
def test_a_mask_shows_at_most_the_prefix_and_the_last_four_characters(secret, masked):
    assert secret_mask(secret) == masked


@pytest.mark.django_db
def test_setting_a_secret_keeps_the_previous_one_for_the_grace_period(settings):
    settings.SECRET_ROTATION_GRACE_SECONDS = 3600
    channel = ChannelFactory(format=Channel.Format.WEBHOOK, webhook_secret="whsec_the-first-secret-0123456789")

    new = channel_webhook_secret_set(channel=channel, now=NOON)

    stored = Channel.objects.get(pk=channel.pk)
    assert new.startswith("whsec_")
    assert len(new) > 40
    assert stored.webhook_secret == new
    assert stored.webhook_secret_previous == "whsec_the-first-secret-0123456789"
    assert stored.webhook_secret_previous_until == NOON + timedelta(hours=1)
    assert stored.webhook_secret_rotated_at == NOON
    assert webhook_secrets_accepted(stored, now=NOON + timedelta(minutes=59)) == [new, stored.webhook_secret_previous]
    assert webhook_secrets_accepted(stored, now=NOON + timedelta(hours=1)) == [new]


@pytest.mark.django_db
def test_a_secret_chosen_by_the_partner_is_kept_as_given_and_generated_ones_differ():
    channel = ChannelFactory(format=Channel.Format.WEBHOOK)

    chosen = channel_webhook_secret_set(channel=channel, secret="the-partner-s-own-secret", now=NOON)
    generated = {channel_webhook_secret_set(channel=channel, now=NOON) for _ in range(3)}

    assert chosen == "the-partner-s-own-secret"
    assert len(generated) == 3
    assert Channel.objects.get(pk=channel.pk).webhook_secret in generated


@pytest.mark.django_db
def test_a_first_secret_has_no_previous_one_to_accept():
    channel = ChannelFactory(format=Channel.Format.WEBHOOK)

    new = channel_webhook_secret_set(channel=channel, now=NOON)

    assert (channel.webhook_secret_previous, channel.webhook_secret_previous_until) == ("", None)
    assert webhook_secrets_accepted(channel, now=NOON) == [new]
    assert webhook_secrets_accepted(Channel(webhook_secret=""), now=NOON) == []


def test_poll_headers_are_read_as_name_value_lines():
    text = "Authorization: Bearer abc:def\n\n  X-Client-Id :  tower \n"

    assert poll_headers_parse(text) == {"Authorization": "Bearer abc:def", "X-Client-Id": "tower"}


@pytest.mark.parametrize(
    "text",
    ["Authorization Bearer k3y-value", "Bad Name: k3y-value", "X-Key:", "X-Key: k3y-välue", ": k3y-value"],
)
def test_a_bad_header_line_is_named_by_number_never_by_content(text):
    with pytest.raises(ValueError, match="line 2") as error:
        poll_headers_parse(f"X-Ok: fine\n{text}")

    assert "k3y" not in str(error.value)


def test_poll_headers_are_masked_by_name():
    headers = {"Authorization": "Bearer 0123456789abcdefWXYZ", "X-Client": "tower"}

    assert poll_headers_masked(headers) == "Authorization: …WXYZ; X-Client: set"
    assert poll_headers_masked({}) == "none"

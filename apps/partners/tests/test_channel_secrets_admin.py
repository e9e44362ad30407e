"""Channel secrets in admin are write-only: webhook secrets and poll headers are shown once when
generated, masked afterwards, for every role and a superuser alike, and cannot be probed."""

import sys
from datetime import timedelta

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth import get_user_model
from django.core.signals import got_request_exception
from django.forms import BaseForm
from django.http import HttpRequest
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from django.views.debug import ExceptionReporter

from apps.exceptions.roles import ROLES, roles_ensure
from apps.partners.credentials import webhook_secrets_accepted
from apps.partners.models import Channel, Partner
from tests.factories import ChannelFactory, PartnerFactory, UserFactory

pytestmark = pytest.mark.django_db

CURRENT = "whsec_current-0123456789abcdefghWXYZ"
PREVIOUS = "whsec_previous-0123456789abcdefghQRST"
CARRIER_KEY = "Bearer carrier-key-0123456789abcdef-KLMN"
TYPED = "a-secret-the-partner-gave-us-0123"
LIST = reverse("admin:partners_channel_changelist")
ADD = reverse("admin:partners_channel_add")
PERSONAS = [*ROLES, "superuser"]


def change_url(channel: Channel) -> str:
    return reverse("admin:partners_channel_change", args=[channel.pk])


def history_url(channel: Channel) -> str:
    return reverse("admin:partners_channel_history", args=[channel.pk])


def signed_in(persona: str) -> Client:
    if persona == "superuser":
        user = get_user_model().objects.create_superuser("root", "root@example.com", "x")
    else:
        user = UserFactory(is_staff=True)
        user.groups.add(roles_ensure()[persona])
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def integration_admin() -> Client:
    return signed_in("Integration Admin")


@pytest.fixture
def hook() -> Channel:
    return ChannelFactory(
        partner=PartnerFactory(code="UPSN", kind=Partner.Kind.CARRIER),
        code="hook",
        format=Channel.Format.WEBHOOK,
        webhook_secret=CURRENT,
        webhook_secret_previous=PREVIOUS,
        webhook_secret_previous_until=timezone.now() + timedelta(hours=1),
        webhook_secret_rotated_at=timezone.now(),
    )


@pytest.fixture
def track(hook: Channel) -> Channel:
    return ChannelFactory(
        partner=hook.partner,
        code="track",
        format=Channel.Format.POLL,
        mapping_overrides={"url": "https://api.carrier.example/track/{tracking}"},
        poll_headers={"Authorization": CARRIER_KEY},
    )


def form_data(form: BaseForm, **changes: object) -> dict[str, object]:
    """What a browser would post back for ``form`` as rendered, with ``changes``."""
    data: dict[str, object] = {}
    for bound in form:
        value = bound.value()
        if value is None or value is False:
            continue
        data[bound.name] = "on" if value is True else value
    return {**data, **changes}


def post_change(client: Client, channel: Channel, **changes: object):
    form = client.get(change_url(channel)).context["adminform"].form
    return client.post(change_url(channel), form_data(form, **changes), follow=True)


def body(response) -> str:
    return response.content.decode()


def assert_no_secret(page: str) -> None:
    for secret in (CURRENT, PREVIOUS, CARRIER_KEY, "carrier-key-0123456789abcdef"):
        assert secret not in page


@pytest.mark.parametrize("persona", PERSONAS)
def test_no_role_reads_a_channels_secrets_in_admin(persona, hook, track):
    client = signed_in(persona)
    LogEntry.objects.log_actions(
        user_id=get_user_model().objects.get().pk, queryset=[hook], action_flag=2, change_message="Edited"
    )

    pages = {
        "list": client.get(LIST),
        "hook": client.get(change_url(hook)),
        "track": client.get(change_url(track)),
        "history": client.get(history_url(hook)),
        "partner": client.get(reverse("admin:partners_partner_change", args=[hook.partner.pk])),
    }

    assert {name: response.status_code for name, response in pages.items()} == dict.fromkeys(pages, 200)
    for response in pages.values():
        assert_no_secret(body(response))
    assert "whsec_…WXYZ" in body(pages["hook"])
    assert "whsec_…QRST" in body(pages["hook"])
    assert "Authorization: …KLMN" in body(pages["track"])


@pytest.mark.parametrize("persona", ["Supply Chain", "Customer Service", "Finance"])
def test_people_who_only_view_channels_get_no_secret_inputs(persona, hook):
    page = body(signed_in(persona).get(change_url(hook)))

    assert "whsec_…WXYZ" in page
    assert 'name="new_webhook_secret"' not in page
    assert "Or set the secret the partner gave you" not in page


@pytest.mark.parametrize(
    ("url", "lookup"),
    [
        (LIST, "webhook_secret__startswith"),
        (LIST, "webhook_secret_previous__startswith"),
        (LIST, "poll_headers__icontains"),
        (reverse("admin:partners_partner_changelist"), "channels__webhook_secret__startswith"),
    ],
)
def test_a_secret_cannot_be_probed_through_list_filters(url, lookup, hook, track):
    client = signed_in("superuser")

    response = client.get(url, {lookup: "whsec_c"})

    assert response.status_code == 400
    assert "UPSN" not in body(response)


def test_rotating_from_the_list_shows_the_new_secret_once_and_keeps_the_old_one_for_the_grace(integration_admin, hook):
    response = integration_admin.post(
        LIST, {"action": "rotate_webhook_secret", "_selected_action": [hook.pk]}, follow=True
    )

    hook.refresh_from_db()
    assert hook.webhook_secret != CURRENT
    assert body(response).count(hook.webhook_secret) == 1
    assert hook.webhook_secret not in body(integration_admin.get(LIST))
    assert hook.webhook_secret not in body(integration_admin.get(change_url(hook)))
    history = body(integration_admin.get(history_url(hook)))
    assert "Rotated the webhook secret." in history
    assert hook.webhook_secret not in history
    assert webhook_secrets_accepted(hook, now=timezone.now()) == [hook.webhook_secret, CURRENT]


def test_people_who_only_view_channels_cannot_rotate(hook):
    client = signed_in("Supply Chain")

    client.post(LIST, {"action": "rotate_webhook_secret", "_selected_action": [hook.pk]})

    assert Channel.objects.get(pk=hook.pk).webhook_secret == CURRENT


def test_generating_from_the_change_form_shows_it_once(integration_admin, hook):
    response = post_change(integration_admin, hook, rotate_webhook_secret="on")

    hook.refresh_from_db()
    assert hook.webhook_secret.startswith("whsec_")
    assert hook.webhook_secret != CURRENT
    assert body(response).count(hook.webhook_secret) == 1
    assert hook.webhook_secret not in body(integration_admin.get(change_url(hook)))
    assert f"whsec_…{hook.webhook_secret[-4:]}" in body(integration_admin.get(change_url(hook)))


def test_a_secret_the_partner_gave_is_stored_and_never_rendered(integration_admin, hook):
    response = post_change(integration_admin, hook, new_webhook_secret=TYPED)

    hook.refresh_from_db()
    assert hook.webhook_secret == TYPED
    assert hook.webhook_secret_previous == CURRENT
    assert TYPED not in body(response)
    assert TYPED not in body(integration_admin.get(change_url(hook)))
    assert TYPED not in body(integration_admin.get(history_url(hook)))
    assert not any(TYPED in entry.change_message for entry in LogEntry.objects.all())


def test_typed_secrets_are_not_sent_back_with_a_form_error(integration_admin, hook, track):
    typed = post_change(integration_admin, hook, new_webhook_secret=TYPED, mapping_overrides="[1]")
    headers = post_change(integration_admin, track, new_poll_headers=f"Authorization: {TYPED}", code="")

    assert "Enter a JSON object" in body(typed)
    assert "This field is required" in body(headers)
    assert TYPED not in body(typed)
    assert TYPED not in body(headers)
    assert Channel.objects.get(pk=hook.pk).webhook_secret == CURRENT


def test_generating_and_setting_at_once_is_refused(integration_admin, hook):
    response = post_change(integration_admin, hook, rotate_webhook_secret="on", new_webhook_secret=TYPED)

    assert "Either generate a secret or set one, not both." in body(response)
    assert Channel.objects.get(pk=hook.pk).webhook_secret == CURRENT


def test_a_new_webhook_channel_gets_a_secret_shown_once(integration_admin):
    partner = PartnerFactory(code="ACME", kind=Partner.Kind.CUSTOMER)
    form = integration_admin.get(ADD).context["adminform"].form

    response = integration_admin.post(
        ADD, form_data(form, partner=partner.pk, code="hook", format=Channel.Format.WEBHOOK), follow=True
    )

    channel = Channel.objects.get(partner=partner, code="hook")
    assert channel.webhook_secret.startswith("whsec_")
    assert body(response).count(channel.webhook_secret) == 1
    assert channel.webhook_secret not in body(integration_admin.get(change_url(channel)))


def test_poll_headers_are_set_and_removed_write_only(integration_admin, track):
    new_key = "Bearer a-new-carrier-key-0123456789-ABCD"

    set_response = post_change(integration_admin, track, new_poll_headers=f"Authorization: {new_key}\nX-Client: tower")
    track.refresh_from_db()
    page = body(integration_admin.get(change_url(track)))

    assert track.poll_headers == {"Authorization": new_key, "X-Client": "tower"}
    assert new_key not in body(set_response)
    assert new_key not in page
    assert "Authorization: …ABCD; X-Client: set" in page

    post_change(integration_admin, track, clear_poll_headers="on")
    assert Channel.objects.get(pk=track.pk).poll_headers == {}


def test_poll_headers_left_blank_are_kept(integration_admin, track):
    post_change(integration_admin, track, name="Renamed")

    track.refresh_from_db()
    assert track.name == "Renamed"
    assert track.poll_headers == {"Authorization": CARRIER_KEY}
    assert track.webhook_secret == ""


def test_a_bad_header_line_is_a_form_error(integration_admin, track):
    response = post_change(integration_admin, track, new_poll_headers="Authorization Bearer k3y-0123456789")

    assert response.status_code == 200
    assert "line 1: write each header as Name: value" in body(response)
    assert "k3y-0123456789" not in body(response)
    assert Channel.objects.get(pk=track.pk).poll_headers == {"Authorization": CARRIER_KEY}


def test_headers_in_the_mapping_are_refused(integration_admin, track):
    mapping = '{"url": "https://api.carrier.example/track/{tracking}", "headers": {"Authorization": "Bearer x"}}'

    response = post_change(integration_admin, track, mapping_overrides=mapping)

    assert "where they are kept write-only" in body(response)
    assert "headers" not in Channel.objects.get(pk=track.pk).mapping_overrides


def test_a_crash_while_saving_keeps_typed_secrets_out_of_the_error_report(integration_admin, hook, monkeypatch):
    reports: list[str] = []

    def report(sender: object, request: HttpRequest, **kwargs: object) -> None:
        reports.append(ExceptionReporter(request, *sys.exc_info()).get_traceback_html())

    def database_down(**kwargs: object) -> str:
        raise ConnectionError("database went away")

    monkeypatch.setattr("apps.partners.admin.channel_webhook_secret_set", database_down)
    got_request_exception.connect(report)
    integration_admin.raise_request_exception = False
    try:
        response = post_change(integration_admin, hook, new_webhook_secret=TYPED, new_poll_headers=f"X-Key: {TYPED}")
    finally:
        got_request_exception.disconnect(report)

    assert response.status_code == 500
    assert "database went away" in reports[0]
    assert "new_webhook_secret" in reports[0]
    assert TYPED not in reports[0]


def test_a_crash_while_rotating_keeps_the_new_secret_out_of_the_error_report(integration_admin, hook, monkeypatch):
    reports: list[str] = []

    def report(sender: object, request: HttpRequest, **kwargs: object) -> None:
        reports.append(ExceptionReporter(request, *sys.exc_info()).get_traceback_html())

    def messages_down(*args: object, **kwargs: object) -> None:
        raise ConnectionError("message store went away")

    monkeypatch.setattr("apps.partners.admin.ChannelAdmin.message_user", messages_down)
    got_request_exception.connect(report)
    integration_admin.raise_request_exception = False
    try:
        response = integration_admin.post(LIST, {"action": "rotate_webhook_secret", "_selected_action": [hook.pk]})
    finally:
        got_request_exception.disconnect(report)

    assert response.status_code == 500
    assert "message store went away" in reports[0]
    assert Channel.objects.get(pk=hook.pk).webhook_secret not in reports[0]

"""A subscription's signing secret is write-only: shown once when generated (admin message or API
answer), masked afterwards, never readable by any role or a superuser, and cannot be probed."""

import sys

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth import get_user_model
from django.core.signals import got_request_exception
from django.forms import BaseForm
from django.http import HttpRequest
from django.test import Client
from django.urls import reverse
from django.views.debug import ExceptionReporter

from apps.exceptions.roles import ROLES, roles_ensure
from apps.outbound.models import Subscription
from apps.outbound.services import subscription_secret_rotate
from apps.partners.models import Partner
from tests.factories import PartnerFactory, SubscriptionFactory, UserFactory

pytestmark = pytest.mark.django_db

SECRET = "subscription-secret-0123456789abcdef-WXYZ"
TYPED = "a-secret-the-receiver-gave-us-0123"
LIST = reverse("admin:outbound_subscription_changelist")
ADD = reverse("admin:outbound_subscription_add")
API = "/api/v1/subscriptions/"
PERSONAS = [*ROLES, "superuser"]
# Who may read subscriptions at all; everyone else is refused before any secret could show.
READERS = {"Integration Admin", "superuser"}


def change_url(subscription: Subscription) -> str:
    return reverse("admin:outbound_subscription_change", args=[subscription.pk])


def history_url(subscription: Subscription) -> str:
    return reverse("admin:outbound_subscription_history", args=[subscription.pk])


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
def subscription() -> Subscription:
    return SubscriptionFactory(
        partner=PartnerFactory(code="ERP1", kind=Partner.Kind.ERP),
        target_url="https://erp.example.com/hooks",
        secret=SECRET,
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


def post_change(client: Client, subscription: Subscription, **changes: object):
    form = client.get(change_url(subscription)).context["adminform"].form
    return client.post(change_url(subscription), form_data(form, **changes), follow=True)


def body(response) -> str:
    return response.content.decode()


@pytest.mark.parametrize("persona", PERSONAS)
def test_no_role_reads_a_subscription_secret_in_admin_or_the_api(persona, subscription):
    client = signed_in(persona)
    LogEntry.objects.log_actions(
        user_id=get_user_model().objects.get().pk, queryset=[subscription], action_flag=2, change_message="Edited"
    )

    pages = {
        "list": client.get(LIST),
        "change": client.get(change_url(subscription)),
        "history": client.get(history_url(subscription)),
        "api list": client.get(API),
        "api detail": client.get(f"{API}{subscription.pk}/"),
        "api deliveries": client.get(f"{API}{subscription.pk}/deliveries/"),
    }

    expected = 200 if persona in READERS else 403
    assert {name: response.status_code for name, response in pages.items()} == dict.fromkeys(pages, expected)
    for response in pages.values():
        assert SECRET not in body(response)
    if persona in READERS:
        assert "…WXYZ" in body(pages["change"])
        assert pages["api detail"].json()["name"] == subscription.name


def test_a_secret_cannot_be_probed_through_list_filters(subscription):
    client = signed_in("superuser")

    assert client.get(LIST, {"secret__startswith": "subscription-"}).status_code == 400
    assert client.get(LIST, {"endpoint__subscriptions__secret__startswith": "s"}).status_code == 400


def test_rotating_from_the_list_shows_each_new_secret_once(integration_admin, subscription):
    other = SubscriptionFactory()

    response = integration_admin.post(
        LIST, {"action": "rotate_secret", "_selected_action": [subscription.pk, other.pk]}, follow=True
    )

    subscription.refresh_from_db()
    other.refresh_from_db()
    assert subscription.secret != SECRET
    assert subscription.secret_rotated_at is not None
    assert body(response).count(subscription.secret) == 1
    assert body(response).count(other.secret) == 1
    assert subscription.secret not in body(integration_admin.get(LIST))
    assert subscription.secret not in body(integration_admin.get(change_url(subscription)))
    history = body(integration_admin.get(history_url(subscription)))
    assert "Rotated the signing secret." in history
    assert subscription.secret not in history


def test_generating_from_the_change_form_shows_it_once(integration_admin, subscription):
    response = post_change(integration_admin, subscription, rotate_secret="on")

    subscription.refresh_from_db()
    assert subscription.secret != SECRET
    assert body(response).count(subscription.secret) == 1
    assert subscription.secret not in body(integration_admin.get(change_url(subscription)))


def test_a_secret_the_receiver_gave_is_stored_and_never_rendered(integration_admin, subscription):
    response = post_change(integration_admin, subscription, new_secret=TYPED)
    error = post_change(integration_admin, subscription, new_secret=TYPED, rotate_secret="on")

    subscription.refresh_from_db()
    assert subscription.secret == TYPED
    assert TYPED not in body(response)
    assert "Either generate a secret or set one, not both." in body(error)
    assert TYPED not in body(error)
    assert not any(TYPED in entry.change_message for entry in LogEntry.objects.all())


def test_a_new_subscription_shows_its_generated_secret_once(integration_admin):
    erp = PartnerFactory(code="ERP2", kind=Partner.Kind.ERP)
    form = integration_admin.get(ADD).context["adminform"].form

    response = integration_admin.post(
        ADD,
        form_data(form, partner=erp.pk, name="Feed", target_url="https://erp.example.com/in", event_kinds="shipment.*"),
        follow=True,
    )

    subscription = Subscription.objects.get(partner=erp)
    assert body(response).count(subscription.secret) == 1
    assert subscription.secret not in body(integration_admin.get(change_url(subscription)))


def test_a_crash_while_saving_keeps_a_typed_secret_out_of_the_error_report(
    integration_admin, subscription, monkeypatch
):
    reports: list[str] = []

    def report(sender: object, request: HttpRequest, **kwargs: object) -> None:
        reports.append(ExceptionReporter(request, *sys.exc_info()).get_traceback_html())

    def database_down(**kwargs: object) -> str:
        raise ConnectionError("database went away")

    monkeypatch.setattr("apps.outbound.admin.subscription_secret_rotate", database_down)
    got_request_exception.connect(report)
    integration_admin.raise_request_exception = False
    try:
        response = post_change(integration_admin, subscription, new_secret=TYPED)
    finally:
        got_request_exception.disconnect(report)

    assert response.status_code == 500
    assert "database went away" in reports[0]
    assert "new_secret" in reports[0]
    assert TYPED not in reports[0]


def test_a_crash_while_rotating_keeps_the_new_secret_out_of_the_error_report(subscription, monkeypatch):
    def database_down(*args: object, **kwargs: object) -> None:
        raise ConnectionError("database went away")

    monkeypatch.setattr("django.db.models.query.QuerySet.update", database_down)

    with pytest.raises(ConnectionError) as error:
        subscription_secret_rotate(subscription=subscription, secret=TYPED)
    # From the call on: this test's own frame holds the secret.
    report = ExceptionReporter(None, error.type, error.value, error.tb.tb_next).get_traceback_html()

    assert "subscription_secret_rotate" in report
    assert TYPED not in report

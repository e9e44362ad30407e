from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from apps.exceptions.models import ExceptionCase, ExceptionRule, NotificationPreference
from apps.exceptions.notifications import critical_cases_notify, digest_send
from apps.exceptions.roles import roles_ensure

pytestmark = pytest.mark.django_db


@pytest.fixture
def people(django_user_model):
    groups = roles_ensure()
    made = {}
    for name, role in (("fiona", "Finance"), ("carl", "Customer Service"), ("nomail", "Finance")):
        user = django_user_model.objects.create_user(name, email="" if name == "nomail" else f"{name}@example.com")
        user.groups.add(groups[role])
        made[name] = user
    return made


def _case(queue: str, *, severity: str = "high", opened_hours_ago: float = 1, due_in_hours: float = 24, n: int = 1):
    rule, _ = ExceptionRule.objects.get_or_create(
        code=f"rule-{queue}", defaults={"title": f"Rule {queue}", "queue": queue}
    )
    now = timezone.now()
    return ExceptionCase.objects.create(
        rule=rule,
        queue=queue,
        severity=severity,
        subject_type="order",
        subject_id=n,
        summary=f"Case {n} in {queue}",
        opened_at=now - timedelta(hours=opened_hours_ago),
        due_at=now + timedelta(hours=due_in_hours),
    )


def test_the_digest_lists_new_and_overdue_cases_of_each_persons_queues(people):
    _case("finance", n=1)
    _case("finance", opened_hours_ago=72, due_in_hours=-5, n=2)
    _case("finance", opened_hours_ago=72, due_in_hours=10, n=3)  # neither new nor overdue
    _case("customer_service", n=4)

    assert digest_send() == 2

    by_person = {message.to[0]: message.body for message in mail.outbox}
    assert set(by_person) == {"fiona@example.com", "carl@example.com"}
    assert "Case 1 in finance" in by_person["fiona@example.com"]
    assert "Overdue (1)" in by_person["fiona@example.com"]
    assert "Case 2 in finance" in by_person["fiona@example.com"]
    assert "Case 3" not in by_person["fiona@example.com"]
    assert "finance" not in by_person["carl@example.com"]


def test_people_who_turned_the_digest_off_get_none(people):
    NotificationPreference.objects.create(user=people["fiona"], daily_digest=False)
    _case("finance")
    assert digest_send() == 0


def test_critical_cases_email_only_people_who_opted_in(people):
    NotificationPreference.objects.create(user=people["fiona"], critical_immediately=True)
    critical = _case("finance", severity="critical", n=1)
    high = _case("finance", severity="high", n=2)

    assert critical_cases_notify([critical.pk, high.pk]) == 1

    [message] = mail.outbox
    assert message.to == ["fiona@example.com"]
    assert message.subject == "Critical: Case 1 in finance"


def test_a_critical_email_shows_the_amount_at_risk_only_to_people_who_may_see_it(people):
    for person in ("fiona", "carl"):
        NotificationPreference.objects.create(user=people[person], critical_immediately=True)
    people["fiona"].groups.add(*people["carl"].groups.all())  # Finance also works Customer Service's queue
    case = _case("customer_service", severity="critical")
    ExceptionCase.objects.filter(pk=case.pk).update(
        subject_type="freight_charge", amount_at_risk="1234.50", currency="EUR"
    )

    assert critical_cases_notify([case.pk]) == 2

    by_person = {message.to[0]: message.body for message in mail.outbox}
    assert "Amount at risk: 1234.50 EUR" in by_person["fiona@example.com"]
    assert "1234" not in by_person["carl@example.com"], "Customer Service does not see freight amounts"
    assert "Case 1 in customer_service" in by_person["carl@example.com"]


def test_people_choose_their_notifications(client, people):
    client.force_login(people["fiona"])
    page = client.get("/settings/notifications/").content.decode()
    assert "Your queues: Finance." in page
    response = client.post("/settings/notifications/", {"critical_immediately": "on"})
    assert response.status_code == 302
    preference = NotificationPreference.objects.get(user=people["fiona"])
    assert (preference.daily_digest, preference.critical_immediately) == (False, True)


def test_notification_settings_need_a_sign_in(client, db):
    assert client.get("/settings/notifications/").status_code == 302

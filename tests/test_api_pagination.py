"""Every list of the API bounds its page: a huge limit or offset is a short page, never a 500."""

import pytest

from controltower.pagination import MAX_OFFSET
from tests.factories import DeliveryFactory, ExceptionCaseFactory, SubscriptionFactory, UserFactory

pytestmark = pytest.mark.django_db

HUGE = "597942371258039402496"


@pytest.fixture
def api(client):
    client.force_login(UserFactory(username="root", is_staff=True, is_superuser=True))
    return client


@pytest.fixture
def lists() -> list[str]:
    ExceptionCaseFactory()
    subscription = SubscriptionFactory()
    DeliveryFactory(subscription=subscription)
    return ["/api/v1/cases/", "/api/v1/subscriptions/", f"/api/v1/subscriptions/{subscription.pk}/deliveries/"]


def test_a_huge_limit_returns_at_most_the_largest_page(api, lists):
    for url in lists:
        response = api.get(url, {"limit": HUGE})

        assert response.status_code == 200, url
        assert response.json()["count"] == len(response.json()["results"]) == 1


def test_a_huge_offset_reads_past_the_end(api, lists):
    for url in lists:
        response = api.get(url, {"offset": HUGE})

        assert response.status_code == 200, url
        assert response.json()["results"] == []
        assert response.json()["previous"].endswith(f"limit=50&offset={MAX_OFFSET - 50}")

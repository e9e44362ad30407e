import pytest
from django.contrib.messages import get_messages
from django.urls import reverse

from apps.partners.models import ApiToken, Partner
from apps.partners.services import api_token_authenticate, api_token_create, api_token_revoke

pytestmark = pytest.mark.django_db


@pytest.fixture
def erp():
    return Partner.objects.create(code="ERP", name="ERP", kind=Partner.Kind.ERP)


def test_a_token_is_stored_hashed_and_authenticates_until_revoked(erp):
    token, raw = api_token_create(partner=erp, name="prod")
    assert raw.startswith("ct_")
    assert raw.split("_", 2)[2] not in token.hashed
    assert api_token_authenticate(raw) == token
    assert api_token_authenticate(raw + "x") is None
    assert api_token_authenticate("ct_nothing") is None
    api_token_revoke(token=token)
    assert api_token_authenticate(raw) is None


def test_the_admin_shows_a_new_token_once(admin_client, erp):
    response = admin_client.post(
        reverse("admin:partners_apitoken_add"), {"partner": erp.pk, "name": "ERP production"}, follow=True
    )
    shown = [str(m) for m in get_messages(response.wsgi_request) if "API token" in str(m)]
    assert len(shown) == 1
    raw = shown[0].split(": ", 1)[1].split(".", 1)[0]
    token = ApiToken.objects.get()
    assert api_token_authenticate(raw) == token
    page = admin_client.get(reverse("admin:partners_apitoken_change", args=[token.pk])).content.decode()
    assert raw not in page

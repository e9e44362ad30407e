"""A Shopify channel in the admin: Shopify's signature scheme, and the customer whose orders the
shop sends, which must be a customer partner."""

import pytest
from django.test import Client
from django.urls import reverse

from apps.partners.models import Channel, Partner

pytestmark = pytest.mark.django_db
ADD = reverse("admin:partners_channel_add")


@pytest.fixture
def partners() -> dict[str, Partner]:
    return {
        code: Partner.objects.create(code=code, name=code, kind=kind)
        for code, kind in [
            ("OUTDOOR", Partner.Kind.SHOP),
            ("ACME", Partner.Kind.CUSTOMER),
            ("UPSN", Partner.Kind.CARRIER),
        ]
    }


def form(partner: Partner, **fields: str) -> dict[str, str]:
    return {
        "partner": str(partner.pk),
        "code": "shopify",
        "format": Channel.Format.WEBHOOK,
        "direction": Channel.Direction.INBOUND,
        "priority": Channel.Priority.DEFAULT,
        "active": "on",
        "mapping_overrides": "{}",
        "signature_scheme": Channel.SignatureScheme.SHOPIFY,
        **fields,
    }


def errors(response) -> dict[str, list[str]]:
    return response.context["adminform"].form.errors


def test_a_shopify_channel_of_a_shop_is_saved_with_its_customer_and_a_secret_shown_once(admin_client: Client, partners):
    response = admin_client.post(ADD, form(partners["OUTDOOR"], customer=str(partners["ACME"].pk)), follow=True)

    channel = Channel.objects.get(code="shopify")
    assert (channel.signature_scheme, channel.customer) == ("shopify", partners["ACME"])
    assert channel.scopes == ["shop_orders"]
    assert channel.webhook_secret in response.content.decode()  # shown once, on the page after saving


def test_the_customer_must_be_a_customer_partner(admin_client: Client, partners):
    response = admin_client.post(ADD, form(partners["OUTDOOR"], customer=str(partners["UPSN"].pk)))

    assert response.status_code == 200
    assert "Select a valid choice" in " ".join(errors(response)["customer"])
    assert not Channel.objects.exists()


def test_a_shopify_channel_needs_its_customer(admin_client: Client, partners):
    response = admin_client.post(ADD, form(partners["OUTDOOR"]))

    assert errors(response)["customer"] == ["Name the customer whose orders this shop sends."]


def test_only_a_shop_sends_shopify_webhooks_or_orders_for_a_customer(admin_client: Client, partners):
    shopify = admin_client.post(ADD, form(partners["UPSN"], customer=str(partners["ACME"].pk)))
    customer_only = admin_client.post(
        ADD, form(partners["UPSN"], customer=str(partners["ACME"].pk), signature_scheme="ours")
    )

    assert "Only an eCommerce shop's channel sends orders for a customer." in errors(shopify)["customer"]
    assert errors(customer_only)["customer"] == ["Only an eCommerce shop's channel sends orders for a customer."]
    assert not Channel.objects.exists()


def test_shopify_signs_webhooks_only(admin_client: Client, partners):
    response = admin_client.post(
        ADD, form(partners["OUTDOOR"], customer=str(partners["ACME"].pk), format=Channel.Format.JSON)
    )
    assert errors(response)["signature_scheme"] == ["Shopify signs webhooks: use the webhook format."]


def test_a_channel_saved_without_a_scheme_keeps_ours(admin_client: Client, partners):
    data = form(partners["UPSN"], code="hook")
    del data["signature_scheme"]

    admin_client.post(ADD, data)

    assert Channel.objects.get(code="hook").signature_scheme == Channel.SignatureScheme.OURS

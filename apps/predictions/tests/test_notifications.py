"""Customer e-mails can name the predicted delivery and its window, in the customer's time zone."""

import pytest

from apps.outbound.notifications import CONTEXT_VARIABLES, notification_context, sample_context
from apps.partners.models import Partner
from apps.predictions.models import Prediction
from apps.predictions.tests.story import apply, at, carrier, shipment_events
from apps.timeline.models import Order, Shipment
from tests.factories import PartnerFactory

pytestmark = pytest.mark.django_db


def context(shipment: Shipment) -> dict[str, str]:
    customer = Partner.objects.get(code="ACME")
    return notification_context(
        customer=customer,
        order=Order.objects.get(number="SO-S1"),
        milestone="delayed",
        shipment=Shipment.objects.select_related("carrier", "prediction").get(pk=shipment.pk),
        event=None,
        po_number="",
        tracking_url="",
        occurred_at=at(20),
    )


def test_the_context_names_the_prediction_in_the_customers_zone():
    carrier()
    PartnerFactory(code="ACME", name="Acme", kind=Partner.Kind.CUSTOMER, time_zone="Europe/Paris")
    apply(shipment_events("S1", pickup=0, customer="ACME", promised=60))
    shipment = Shipment.objects.get(number="S1")
    assert (context(shipment)["predicted_delivery"], context(shipment)["predicted_window"]) == ("", "")

    Prediction.objects.create(shipment=shipment, as_of=at(1), basis="model", p10=at(40), p50=at(48), p90=at(70))

    values = context(shipment)
    # 2 Nov 2026 08:00 UTC + 48 h is 4 Nov 09:00 in Paris (CET, UTC+1).
    assert values["predicted_delivery"] == "04 Nov 2026 09:00 CET"
    assert values["predicted_window"] == "04 Nov 2026 01:00 CET – 05 Nov 2026 07:00 CET"


def test_templates_may_name_the_prediction():
    assert {"predicted_delivery", "predicted_window"} <= set(CONTEXT_VARIABLES) & set(sample_context())

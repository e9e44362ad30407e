import factory
import pytest

from apps.timeline.events import parse_event
from apps.timeline.models import Reference
from tests import factories

ALL_FACTORIES = [
    factories.UserFactory,
    factories.PartnerFactory,
    factories.EdiIdentifierFactory,
    factories.ChannelFactory,
    factories.OrderFactory,
    factories.OrderLineFactory,
    factories.ShipmentFactory,
    factories.ShipmentLineFactory,
    factories.ReferenceFactory,
    factories.ShipmentOrderClaimFactory,
    factories.MilestoneFactory,
    factories.ParkedEventFactory,
    factories.ParkedReferenceFactory,
    factories.InventoryPositionFactory,
    factories.FreightChargeFactory,
    factories.InvoiceFactory,
    factories.ReturnAuthorizationFactory,
]


@pytest.mark.django_db
@pytest.mark.parametrize("factory_class", ALL_FACTORIES, ids=lambda f: f.__name__)
def test_factory_saves_a_valid_object(factory_class: type[factory.django.DjangoModelFactory]) -> None:
    obj = factory_class()

    obj.full_clean()
    assert type(obj).objects.filter(pk=obj.pk).exists()
    assert str(obj)


@pytest.mark.django_db
def test_two_objects_of_each_factory_do_not_clash() -> None:
    for factory_class in ALL_FACTORIES:
        factory_class.create_batch(2)


@pytest.mark.django_db
def test_reference_belongs_to_exactly_one_subject() -> None:
    shipment = factories.ShipmentFactory()

    on_order = factories.ReferenceFactory()
    on_shipment = factories.ReferenceFactory(shipment=shipment)

    assert (on_order.kind, on_order.shipment, on_order.order is not None) == ("po", None, True)
    assert (on_shipment.kind, on_shipment.order, on_shipment.shipment) == ("tracking", None, shipment)
    on_shipment.full_clean()
    assert Reference.objects.count() == 2


@pytest.mark.django_db
def test_parked_event_comes_with_the_reference_its_payload_names() -> None:
    parked = factories.ParkedEventFactory(tracking="1ZLOST")

    assert list(parked.references.values_list("kind", "value")) == [("tracking", "1ZLOST")]
    assert parked.payload["references"] == [{"kind": "tracking", "value": "1ZLOST"}]


@pytest.mark.django_db
def test_event_payloads_are_valid_canonical_events() -> None:
    milestone = factories.MilestoneFactory()
    parked = factories.ParkedEventFactory()

    assert parse_event(milestone.payload).event_id == milestone.event_id
    assert parse_event(parked.payload).kind.value == parked.kind


@pytest.mark.django_db
def test_shipment_factory_links_orders() -> None:
    order = factories.OrderFactory()

    shipment = factories.ShipmentFactory(orders=[order])

    assert list(shipment.orders.all()) == [order]


@pytest.mark.django_db
def test_user_factory_grants_permissions() -> None:
    user = factories.UserFactory(permissions=["timeline.view_order", "partners.change_partner"])

    assert user.has_perm("timeline.view_order")
    assert user.has_perm("partners.change_partner")
    assert not user.has_perm("timeline.change_order")

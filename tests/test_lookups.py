"""``field__any=values`` and ``field__each=values`` select what ``field__in=values`` selects, on every
database (``tests/test_index_plans.py`` shows why there are two)."""

import pytest

from apps.timeline.models import Order, Reference, Shipment
from tests.factories import OrderFactory, ReferenceFactory, ShipmentFactory

pytestmark = pytest.mark.django_db


def _ids(queryset) -> set[int]:
    return set(queryset.values_list("pk", flat=True))


@pytest.fixture
def orders() -> list[Order]:
    return [
        OrderFactory(number=f"SO-{n}", currency=currency) for n, currency in enumerate(["EUR", "EUR", "USD", "SGD"])
    ]


def test_text_membership_matches_in(orders: list[Order]) -> None:
    wanted = {"SO-0", "SO-2", "SO-404"}

    assert _ids(Order.objects.filter(number__any=wanted)) == _ids(Order.objects.filter(number__in=wanted))
    assert _ids(Order.objects.filter(number__any=wanted)) == {orders[0].pk, orders[2].pk}


def test_a_longer_value_never_matches_a_shorter_stored_one(orders: list[Order]) -> None:
    # The column holds at most 3 characters; the list must not be cut to the column's length.
    assert not Order.objects.filter(currency__any=["EURO", "USDX"]).exists()
    assert _ids(Order.objects.filter(currency__any=["EUR"])) == {orders[0].pk, orders[1].pk}


def test_ids_relations_and_exclusion(orders: list[Order]) -> None:
    shipment = ShipmentFactory()
    shipment.orders.add(orders[1], orders[3])
    ReferenceFactory(kind="po", value="PO-1", order=orders[1])
    ReferenceFactory(kind="po", value="PO-2", order=orders[2])
    ids = {orders[1].pk, orders[2].pk}

    assert _ids(Order.objects.filter(pk__any=ids)) == ids
    assert set(Reference.objects.filter(order__any=ids).values_list("value", flat=True)) == {"PO-1", "PO-2"}
    assert set(Reference.objects.filter(order_id__any=[orders[2].pk]).values_list("value", flat=True)) == {"PO-2"}
    assert _ids(Shipment.objects.filter(orders__any=[orders[3].pk])) == {shipment.pk}
    assert _ids(Order.objects.exclude(pk__any=ids)) == {orders[0].pk, orders[3].pk}


def test_empty_and_none_values_select_nothing(orders: list[Order]) -> None:
    assert not Order.objects.filter(pk__any=[]).exists()
    assert not Order.objects.filter(number__any=[None]).exists()
    assert Order.objects.exclude(pk__any=set()).count() == len(orders)


def test_any_iterable_is_read_once(orders: list[Order]) -> None:
    numbers = (order.number for order in orders[:2])  # a generator, a dict or a set all work

    assert _ids(Order.objects.filter(number__any=numbers)) == {orders[0].pk, orders[1].pk}
    assert _ids(Order.objects.filter(pk__any={orders[3].pk: "x"})) == {orders[3].pk}


def test_values_that_mean_something_in_an_array_literal_are_matched_as_written() -> None:
    awkward = ['PO "7"', "back\\slash", "a,b", "{braces}", " spaced ", "NULL", "Zoë's 📦", ""]
    for value in awkward:
        ReferenceFactory(kind="po", value=value)
    ReferenceFactory(kind="po", value="a")

    found = set(Reference.objects.filter(value__any=awkward).values_list("value", flat=True))

    assert found == set(awkward)


def test_each_selects_what_in_selects(orders: list[Order]) -> None:
    shipment = ShipmentFactory()
    shipment.orders.add(orders[1])
    awkward = ['PO "7"', "back\\slash", "a,b", "{braces}", "NULL", "Zoë's 📦", ""]
    for value in [*awkward, "a"]:
        ReferenceFactory(kind="po", value=value, order=orders[0])
    cases = [
        (Order.objects, "number", {"SO-0", "SO-2", "SO-404"}),
        (Order.objects, "pk", {orders[1].pk, orders[2].pk}),
        (Order.objects, "currency", ["EURO", "USD"]),
        (Reference.objects, "value", awkward),
        (Shipment.objects, "orders", [orders[1].pk]),
        (Order.objects, "pk", []),
        (Order.objects, "number", [None]),
    ]

    for manager, field, values in cases:
        each = _ids(manager.filter(**{f"{field}__each": values}))
        assert each == _ids(manager.filter(**{f"{field}__in": values})), (field, values)
    assert _ids(Order.objects.exclude(pk__each=[orders[0].pk])) == {order.pk for order in orders[1:]}

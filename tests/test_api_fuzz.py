"""Every operation of the OpenAPI schema, fed generated requests: no request may get a 5xx.

Schemathesis builds valid and invalid requests from the schema drf-spectacular generates and sends
them in-process to the WSGI application, as a superuser (session and CSRF token, as a browser
would), as a partner's API token and anonymously. Reads land on seeded rows: half of the generated
path ids are swapped for the id of a real row of that resource.
"""

import os
import secrets
from collections.abc import Iterator

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from django.test import Client
from drf_spectacular.generators import SchemaGenerator
from hypothesis import settings
from schemathesis.checks import not_a_server_error, response_schema_conformance

from apps.exceptions.models import ExceptionCase
from apps.ingest.models import InboundMessage
from apps.outbound.models import Subscription
from apps.partners.models import Partner
from apps.partners.services import api_token_create
from apps.timeline.models import Order
from apps.timeline.services import apply_events
from controltower.wsgi import application
from tests import stories
from tests.factories import (
    DeliveryFactory,
    ExceptionCaseFactory,
    InboundMessageFactory,
    PartnerFactory,
    SubscriptionFactory,
    UserFactory,
)
from tests.stories import carrier, manifested, order_created

pytestmark = pytest.mark.django_db

EXAMPLES_PER_OPERATION = 25 if os.environ.get("HYPOTHESIS_PROFILE") == "ci" else 6
# The model whose rows a path's ``{id}`` names.
RESOURCES = {
    "/api/v1/orders/": Order,
    "/api/v1/cases/": ExceptionCase,
    "/api/v1/messages/": InboundMessage,
    "/api/v1/subscriptions/": Subscription,
}


def openapi_without_security() -> dict:
    """The API's schema, with its security schemes left out so that the credentials sent are only the
    persona's: otherwise generated tokens and session cookies stand in front of them."""
    schema = SchemaGenerator().get_schema(public=True)
    schema["components"].pop("securitySchemes", None)
    for operations in schema["paths"].values():
        for operation in operations.values():
            operation.pop("security", None)
    return schema


api_schema = schemathesis.openapi.from_dict(openapi_without_security())
# Tokens and anonymous callers are mostly turned away before their input is read: random requests
# cover them, without the coverage phase's hundreds of boundary cases per operation.
api_schema_fuzzing_only = schemathesis.openapi.from_dict(
    openapi_without_security(), config=schemathesis.Config.from_dict({"phases": {"coverage": {"enabled": False}}})
)


@pytest.fixture
def in_process() -> Iterator[None]:
    """Keep the test's connection open across requests, as Django's own test client does: each WSGI
    request would otherwise close it, taking the test's transaction with it."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def seeded(in_process) -> dict[type, int]:
    """A little of everything the API reads, built through the real apply service where it can be."""
    customer = PartnerFactory(code="ACME", kind=Partner.Kind.CUSTOMER)
    erp = PartnerFactory(code="ERP1", kind=Partner.Kind.ERP)
    PartnerFactory(code="UPSN", kind=Partner.Kind.CARRIER)
    apply_events(
        stories.events(
            order_created("SO-1", order={"customer": "ACME", "region": "EU-West"}),
            manifested("SH-1", "1Z999", "SO-1", attributes={"carrier": "UPSN"}),
            carrier("1Z999", "shipment.delivered", 30),
            partner="ERP1",
        )
    )
    order = Order.objects.get(number="SO-1")
    case = ExceptionCaseFactory(order=order, customer=customer)
    message = InboundMessageFactory(partner=erp, status=InboundMessage.Status.FAILED, error="unreadable")
    subscription = SubscriptionFactory(partner=erp)
    DeliveryFactory(subscription=subscription)
    return {Order: order.pk, ExceptionCase: case.pk, InboundMessage: message.pk, Subscription: subscription.pk}


@pytest.fixture
def credentials(persona: str, seeded: dict[type, int]) -> dict[str, dict[str, str]]:
    """What each persona sends: a signed-in session with its CSRF token, a partner token, or nothing."""
    if persona == "superuser":
        client = Client()
        client.force_login(UserFactory(username="root", is_staff=True, is_superuser=True))
        session = client.cookies["sessionid"].value
        csrf = secrets.token_hex(16)
        return {"cookies": {"sessionid": session, "csrftoken": csrf}, "headers": {"X-CSRFToken": csrf}}
    if persona == "partner":
        _, raw = api_token_create(partner=Partner.objects.get(code="ERP1"), name="fuzz")
        return {"headers": {"Authorization": f"Bearer {raw}"}}
    return {}


def point_at_seeded_row(case: schemathesis.Case, seeded: dict[type, int]) -> None:
    """Swap an even generated number in ``{id}`` for a real row's, so reads and actions reach existing data."""
    generated = str((case.path_parameters or {}).get("id"))
    model = next((m for prefix, m in RESOURCES.items() if case.path.startswith(prefix)), None)
    if model is not None and generated.isdigit() and int(generated) % 2 == 0:
        case.path_parameters["id"] = seeded[model]


def call_and_check(case: schemathesis.Case, credentials: dict[str, dict[str, str]], seeded: dict[type, int]) -> None:
    point_at_seeded_row(case, seeded)
    response = case.call(app=application, **credentials)
    case.validate_response(response, checks=[not_a_server_error], headers=credentials.get("headers"))


@pytest.mark.parametrize("persona", ["superuser"])
@api_schema.parametrize()
@settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None)
def test_superuser_gets_no_server_error(case, credentials, seeded):
    call_and_check(case, credentials, seeded)


@pytest.mark.parametrize("persona", ["partner", "anonymous"])
@api_schema_fuzzing_only.parametrize()
@settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None)
def test_partner_and_anonymous_get_no_server_error(case, credentials, seeded):
    call_and_check(case, credentials, seeded)


@pytest.mark.parametrize("persona", ["superuser", "partner"])
def test_every_read_of_seeded_rows_answers_as_the_schema_says(credentials, seeded):
    """What clients generate their code from must match what they get: nullable where null comes."""
    failures = []
    for path, operations in api_schema.raw_schema["paths"].items():
        model = next((m for prefix, m in RESOURCES.items() if path.startswith(prefix)), None)
        if "get" not in operations or ("{id}" in path and model is None):
            continue
        case = api_schema[path]["GET"].Case(path_parameters={"id": seeded[model]} if "{id}" in path else {})
        response = case.call(app=application, **credentials)
        try:
            case.validate_response(response, checks=[response_schema_conformance], headers=credentials.get("headers"))
        except BaseException as exc:  # noqa: BLE001 - schemathesis raises an exception group of its findings
            failures.append(f"{path}: {exc}")
    assert not failures, "\n\n".join(failures)


def test_the_fuzzed_schema_holds_every_api_route():
    """A schema that lost its operations would let the tests above pass by testing nothing."""
    paths = set(openapi_without_security()["paths"])
    routes = {"/api/v1/events/", "/api/v1/messages/", "/api/v1/messages/replay/", "/api/v1/deliveries/replay/"}

    assert routes | set(RESOURCES) <= paths
    assert {f"{prefix}{{id}}/" for prefix in RESOURCES} <= paths

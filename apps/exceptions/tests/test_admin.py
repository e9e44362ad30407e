# ruff: noqa: F811 - the shared fixtures are imported from test_views and requested by name
import pytest

from apps.exceptions.models import CaseEvent
from apps.exceptions.tests.test_views import make_case

pytestmark = pytest.mark.django_db

from apps.exceptions.tests.test_views import partners, rules  # noqa: E402, F401 - fixtures


@pytest.fixture
def admin(client, django_user_model):
    client.force_login(django_user_model.objects.create_superuser("root", "root@example.com", "x"))
    return client


def test_rule_pages_render_and_rules_are_editable(admin, rules):
    rule = rules["invoice_held"]

    assert admin.get("/admin/exceptions/exceptionrule/", {"queue": "finance", "q": "held"}).status_code == 200
    assert admin.get("/admin/exceptions/exceptionrule/add/").status_code == 200
    page = admin.get(f"/admin/exceptions/exceptionrule/{rule.pk}/change/")
    assert page.status_code == 200
    assert 'name="sla"' in page.content.decode()


def test_case_list_is_flat_and_the_case_shows_its_history(admin, rules, partners, django_assert_max_num_queries):
    cases = [make_case(rules["invoice_held"], f"SO-{i}", customer=partners["ACME"]) for i in range(20)]
    CaseEvent.objects.create(case=cases[0], at=cases[0].opened_at, action="commented", note="Looked into it")

    with django_assert_max_num_queries(15):
        assert admin.get("/admin/exceptions/exceptioncase/").status_code == 200
    page = admin.get(f"/admin/exceptions/exceptioncase/{cases[0].pk}/change/")
    assert page.status_code == 200
    assert "Looked into it" in page.content.decode()
    assert admin.get("/admin/exceptions/exceptioncase/add/").status_code == 403

import pytest

from apps.partners.models import Partner


@pytest.fixture
def partners() -> dict[str, Partner]:
    return {
        "DC1": Partner.objects.create(code="DC1", name="DC1", kind=Partner.Kind.WAREHOUSE),
        "DC2": Partner.objects.create(code="DC2", name="DC2", kind=Partner.Kind.WAREHOUSE),
        "ERP": Partner.objects.create(code="ERP", name="ERP", kind=Partner.Kind.ERP),
    }

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from apps.partners.models import EdiIdentifier, Partner
from tests.factories import EdiIdentifierFactory, PartnerFactory

pytestmark = pytest.mark.django_db


def run(*args: str) -> str:
    out = StringIO()
    call_command("partner", *args, stdout=out)
    return out.getvalue()


def test_creates_a_partner_with_its_edi_identifiers() -> None:
    output = run(
        "ACME",
        "--kind=carrier",
        "--name=Acme Freight",
        "--edi-id=ZZ:ACMEUS",
        "--edi-id",
        "02:SCAC",
        "--region=NA-East",
        "--time-zone=America/New_York",
    )

    partner = Partner.objects.get(code="ACME")
    assert output.startswith("created ACME: Acme Freight (Carrier)")
    assert (partner.kind, partner.name, partner.region, partner.time_zone) == (
        "carrier",
        "Acme Freight",
        "NA-East",
        "America/New_York",
    )
    assert sorted(map(str, partner.edi_identifiers.all())) == ["02:SCAC", "ZZ:ACMEUS"]


def test_a_new_partner_is_named_after_its_code() -> None:
    run("GLOBEX", "--kind", "customer")

    assert Partner.objects.get(code="GLOBEX").name == "GLOBEX"


def test_updates_an_existing_partner_and_keeps_what_is_not_given() -> None:
    PartnerFactory(code="ACME", name="Acme", kind="customer", region="EU-West", time_zone="Europe/Paris")
    EdiIdentifierFactory(partner=Partner.objects.get(code="ACME"), qualifier="ZZ", value="ACMEUS")

    output = run("ACME", "--kind", "warehouse", "--edi-id", "ZZ:ACMEUS", "--edi-id", "01:123456789")

    partner = Partner.objects.get(code="ACME")
    assert output.startswith("updated ACME: Acme (Warehouse)")
    assert (partner.kind, partner.region, partner.time_zone) == ("warehouse", "EU-West", "Europe/Paris")
    assert sorted(map(str, partner.edi_identifiers.all())) == ["01:123456789", "ZZ:ACMEUS"]
    assert Partner.objects.count() == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["ACME", "--kind", "shipper"], "invalid choice: 'shipper'"),
        (["ACME"], "--kind"),
        (["bad code", "--kind", "erp"], "code: Use letters, digits"),
        (["ACME", "--kind", "erp", "--edi-id", "ACMEUS"], "'ACMEUS' is not QUALIFIER:ID"),
        (["ACME", "--kind", "erp", "--edi-id", "ZZ:"], "'ZZ:' is not QUALIFIER:ID"),
        (["ACME", "--kind", "erp", "--edi-id", "TOOLONG:X"], "qualifier: Ensure this value has at most 4"),
        (["ACME", "--kind", "erp", "--time-zone", "Mars/Olympus"], "Unknown time zone 'Mars/Olympus'"),
    ],
)
def test_bad_input_is_a_command_error(args: list[str], message: str) -> None:
    with pytest.raises(CommandError, match=message):
        run(*args)

    assert not Partner.objects.exists()


def test_an_edi_identifier_of_another_partner_is_refused_and_nothing_is_saved() -> None:
    EdiIdentifierFactory(partner=PartnerFactory(code="GLOBEX"), qualifier="ZZ", value="SHARED")

    with pytest.raises(CommandError, match="ZZ:SHARED already belongs to partner GLOBEX"):
        run("ACME", "--kind", "customer", "--edi-id", "ZZ:SHARED")

    assert not Partner.objects.filter(code="ACME").exists()
    assert EdiIdentifier.objects.get(value="SHARED").partner.code == "GLOBEX"

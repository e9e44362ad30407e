"""``ingest --dry-run`` for onboarding: each event with the fragment it came from, the codes not
mapped with where they were read and how to map them, and the channel mapping version used."""

import json

import pytest
from django.core.management import call_command

from apps.partners.models import Channel, Partner
from apps.partners.services import channel_mapping_save
from tests.factories import ChannelFactory, PartnerFactory

pytestmark = pytest.mark.django_db

STATUS_214 = (
    "ISA*00*          *00*          *02*RDLN           *ZZ*TOWER          *261120*1403*U*00401*000000101*0*P*>~"
    "GS*QM*RDLN*TOWER*20261120*1403*101*X*004010~ST*214*0001~B10*PRO-77*SH-77*RDLN~"
    "LX*1~AT7*X1*NS***20261120*1403*LT~MS1*LYON**FR~"
    "LX*2~AT7*ZZ*NS***20261120*1500*LT~MS1*LYON**FR~SE*9*0001~GE*1*101~IEA*1*000000101~"
)


@pytest.fixture
def carrier(tmp_path):
    partner = PartnerFactory(code="RDLN", kind=Partner.Kind.CARRIER)
    channel = ChannelFactory(partner=partner, code="edi-214", format=Channel.Format.X12)
    path = tmp_path / "status.edi"
    path.write_text(STATUS_214)
    return channel, path


def test_dry_run_shows_each_event_s_segment_and_what_is_not_mapped(carrier, capsys):
    channel, path = carrier

    call_command("ingest", str(path), "--partner", "RDLN", "--dry-run")

    out = capsys.readouterr().out
    assert "channel edi-214 mapping v0]: 2 event(s)" in out
    assert "shipment.status_unmapped" in out
    assert "from ST*214*0001~ B10*PRO-77*SH-77*RDLN~ LX*2~ AT7*ZZ*NS***20261120*1500*LT~ MS1*LYON**FR" in out
    assert "not mapped: ZZ: AT701 status code of a 214 no table knows; " in out
    assert 'map it with status_codes {"ZZ": <event kind>}' in out


def test_dry_run_after_a_saved_mapping_reads_the_new_version(carrier, capsys):
    channel, path = carrier
    channel_mapping_save(channel=channel, mapping={"status_codes": {"ZZ": "shipment.delayed"}}, author=None)

    call_command("ingest", str(path), "--partner", "RDLN", "--dry-run", "--json")

    [preview] = json.loads(capsys.readouterr().out)
    assert (preview["channel"], preview["mapping_version"]) == ("edi-214", 1)
    assert [event["kind"] for event in preview["events"]] == ["shipment.out_for_delivery", "shipment.delayed"]
    assert preview["unmapped_codes"] == preview["not_mapped"] == []

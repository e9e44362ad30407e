"""A CSV file sent without its format or channel: the partner's CSV channel whose columns its
header row matches reads it."""

import json

import pytest
from django.core.management import CommandError, call_command

from apps.ingest.models import InboundMessage
from apps.ingest.services import message_process, message_receive
from apps.partners.models import Channel

from .conftest import as_body, order_created

pytestmark = pytest.mark.django_db(transaction=True)

RELEASES = {"csv": {"feed": "order_release", "columns": {"order": "Order No", "occurred_at": "Released At"}}}
STOCK = {"csv": {"feed": "inventory_snapshot"}}


@pytest.fixture
def erp_feeds(erp):
    erp.channels.create(code="releases", format=Channel.Format.CSV, mapping_overrides=RELEASES)
    erp.channels.create(code="stock", format=Channel.Format.CSV, mapping_overrides=STOCK)
    return erp


def ingest(tmp_path, name: str, body: bytes, *options: str) -> dict:
    path = tmp_path / name
    path.write_bytes(body)
    call_command("ingest", str(path), "--partner", "ERP", "--format", "auto", "--sync", "--json", *options)


def report_of(capsys) -> dict:
    [report] = json.loads(capsys.readouterr().out)
    return report


@pytest.mark.parametrize(
    "body",
    [
        b"Order No,Released At,SKU,Qty\nSO-1,2026-11-20T08:00:00Z,SKU-1,5\nSO-1,2026-11-20T08:00:00Z,SKU-2,2\n",
        b"ORDER NO;released at;SKU;Qty\r\nSO-1;2026-11-20T08:00:00Z;SKU-1;5\r\nSO-1;2026-11-20T08:00:00Z;SKU-2;2\r\n",
    ],
    ids=["comma", "semicolon"],
)
def test_an_order_release_file_is_read_by_the_releases_channel(erp_feeds, tmp_path, capsys, body):
    ingest(tmp_path, "releases.txt", body)
    report = report_of(capsys)
    assert (report["status"], report["format"], report["error"]) == ("processed", "csv", "")
    [event] = report["events"]
    assert event["kind"] == "order.released"
    assert [line["sku"] for line in event["lines"]] == ["SKU-1", "SKU-2"]
    assert event["source"]["channel"] == "releases"
    assert InboundMessage.objects.get().channel.code == "releases"


def test_a_tab_separated_stock_file_is_read_by_the_stock_channel(erp_feeds, tmp_path, capsys):
    body = b"sku\tquantity\tsnapshot_at\nSKU-1\t120\t2026-11-20T06:00:00Z\nSKU-2\t7\t2026-11-20T06:00:00Z\n"
    ingest(tmp_path, "stock.tsv", body)
    report = report_of(capsys)
    assert (report["status"], report["format"]) == ("processed", "csv"), report["warnings"]
    [event] = report["events"]
    assert (event["kind"], event["source"]["channel"]) == ("inventory.snapshot", "stock")
    assert InboundMessage.objects.get().channel.code == "stock"


def test_a_header_matching_no_channel_is_a_dead_letter_naming_the_channels(erp_feeds, tmp_path, capsys):
    with pytest.raises(CommandError, match="1 file"):
        ingest(tmp_path, "mystery.csv", b"Parcel,State,When\nT-1,delivered,2026-11-20\n")
    message = InboundMessage.objects.get()
    assert message.status == "dead"
    assert message.error == (
        "could not tell the format: the header row matches none of partner ERP's CSV channels: "
        "releases (order_release: Order No, Released At); stock (inventory_snapshot: sku, quantity); "
        "header read: Parcel, State, When"
    )


def test_binary_data_is_not_taken_for_csv(erp_feeds, tmp_path, capsys):
    with pytest.raises(CommandError, match="1 file"):
        ingest(tmp_path, "picture.png", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR,sku;qty|")
    message = InboundMessage.objects.get()
    assert message.status == "dead"
    assert message.error.startswith("could not tell the format: not X12, EDIFACT")


def test_json_and_edi_keep_their_own_format(erp_feeds, tmp_path, capsys):
    ingest(tmp_path, "events.json", as_body(order_created("SO-7")))
    assert report_of(capsys)["format"] == "json"
    x12 = (
        b"ISA*00*          *00*          *ZZ*ERP            *ZZ*CT             *261120*0800*U*00401*000000001*0*P*>~"
        b"GS*SW*ERP*CT*20261120*0800*1*X*004010~ST*945*0001~W06*N*SO-7*20261120*SH-7~SE*3*0001~GE*1*1~"
        b"IEA*1*000000001~"
    )
    path = tmp_path / "945.edi"
    path.write_bytes(x12)
    call_command("ingest", str(path), "--partner", "ERP", "--dry-run", "--json")
    [preview] = json.loads(capsys.readouterr().out)
    assert preview["format"] == "x12"


def test_an_upload_without_format_chooses_the_channel_and_a_dry_run_shows_the_same(erp_feeds, tmp_path, capsys):
    body = b"sku|quantity|snapshot_at\nSKU-1|3|2026-11-20T06:00:00Z\n"
    path = tmp_path / "stock.txt"
    path.write_bytes(body)
    call_command("ingest", str(path), "--partner", "ERP", "--dry-run", "--json")
    [preview] = json.loads(capsys.readouterr().out)
    assert (preview["format"], preview["error"]) == ("csv", "")
    assert preview["events"][0]["kind"] == "inventory.snapshot"

    message, _ = message_receive(body=body, source="api", partner=erp_feeds, enqueue=False)
    message_process(message.pk)
    message.refresh_from_db()
    assert (message.status, message.format, message.channel.code) == ("processed", "csv", "stock")


def test_a_webhook_channel_with_a_csv_mapping_reads_csv_posted_to_it(carrier):
    hook = carrier.channels.get(code="hook")
    hook.mapping_overrides = {"csv": {"columns": {"tracking": "Parcel", "status": "State", "occurred_at": "When"}}}
    hook.save()
    body = b"Parcel,State,When\n1Z1,delivered,2026-11-20T08:00:00Z\n"
    message, _ = message_receive(body=body, source="webhook", partner=carrier, channel=hook, enqueue=False)
    message_process(message.pk)
    message.refresh_from_db()
    assert (message.status, message.format, message.events_count) == ("processed", "csv", 1)

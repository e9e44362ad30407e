import json

import pytest
from django.core.management import CommandError, call_command

from apps.ingest.models import InboundMessage
from apps.timeline.models import Order

from .conftest import as_body, order_created

# Real commits: receivers queue processing on commit, as in production.
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def folder(tmp_path):
    (tmp_path / "good.json").write_bytes(as_body(order_created("SO-1")))
    (tmp_path / "nested").mkdir()
    (tmp_path / "nested" / "more.json").write_bytes(as_body(order_created("SO-2")))
    (tmp_path / "broken.json").write_bytes(b'{"events": [{"event_id": "x"}]}')
    return tmp_path


def test_ingest_a_folder_prints_a_summary_naming_every_failure(folder, erp, capsys):
    with pytest.raises(CommandError, match="1 file"):
        call_command("ingest", str(folder), "--partner", "ERP", "--sync")
    out = capsys.readouterr().out
    assert "Messages stored 3" in out
    assert "events applied 2" in out
    failure = next(line for line in out.splitlines() if "FAILED" in line)
    assert "broken.json" in failure
    assert "events[0]" in failure
    assert InboundMessage.objects.filter(status="dead").count() == 1
    assert Order.objects.count() == 2


def test_ingesting_again_stores_nothing_new(folder, erp, capsys):
    (folder / "broken.json").unlink()
    call_command("ingest", str(folder), "--partner", "ERP", "--sync")
    call_command("ingest", str(folder), "--partner", "ERP", "--sync")
    assert "Messages stored 0, duplicates 2" in capsys.readouterr().out
    assert InboundMessage.objects.count() == 2


def test_json_output_lists_each_message_with_its_events(folder, erp, capsys):
    (folder / "broken.json").unlink()
    call_command("ingest", str(folder / "good.json"), "--partner", "ERP", "--sync", "--json")
    [report] = json.loads(capsys.readouterr().out)
    assert report["status"] == "processed"
    assert [event["event_id"] for event in report["events"]] == ["SO-1-created"]
    assert report["events"][0]["source"]["partner"] == "ERP"


def test_dry_run_parses_and_stores_nothing(folder, erp, capsys):
    call_command("ingest", str(folder), "--partner", "ERP", "--dry-run", "--json")
    previews = {p["file"].rsplit("/", 1)[-1]: p for p in json.loads(capsys.readouterr().out)}
    assert previews["good.json"]["events"][0]["kind"] == "order.created"
    assert "events[0]" in previews["broken.json"]["error"]
    assert not InboundMessage.objects.exists()
    assert not Order.objects.exists()


def test_unknown_partner_and_missing_path_are_clear_errors(folder, erp):
    with pytest.raises(CommandError, match="Unknown partner 'NOPE'"):
        call_command("ingest", str(folder), "--partner", "NOPE")
    with pytest.raises(CommandError, match="no such file"):
        call_command("ingest", str(folder / "missing.edi"), "--partner", "ERP")

"""Management commands given bad arguments or documents: one clear line and a non-zero exit, never a
traceback. In process through call_command (a CommandError), and as a user runs them (a subprocess)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from apps.ingest.models import InboundMessage
from apps.ingest.tests.conftest import as_body, order_created
from apps.partners.models import Partner
from apps.timeline.models import Shipment

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = ROOT / "apps" / "ingest" / "tests" / "documents"
TRUNCATED_ISA = b"ISA*00*          *00*          *ZZ*NORTHDC  *ZZ*CTRLTOWER*2612"
TRUNCATED = "segment 1 (ISA): expected 16 element separators '*', found 9 before the end of the input (truncated ISA)"
GARBAGE = bytes(range(256)) * 8


@pytest.fixture
def files(tmp_path) -> Path:
    (tmp_path / "empty.edi").write_bytes(b"")
    (tmp_path / "garbage.bin").write_bytes(GARBAGE)
    (tmp_path / "truncated.edi").write_bytes(TRUNCATED_ISA)
    (tmp_path / "orders.json").write_bytes(b'{"events": []}')
    return tmp_path


@pytest.fixture
def warehouse(db) -> Partner:
    return Partner.objects.create(code="NORTHDC", name="North DC", kind=Partner.Kind.WAREHOUSE)


def run(name: str, *args: str, capsys) -> tuple[str, str]:
    """Run a command that must fail: its error message, and everything it printed."""
    with pytest.raises(CommandError) as raised:
        call_command(name, *args)
    captured = capsys.readouterr()
    printed = captured.out + captured.err
    assert "Traceback" not in printed
    return str(raised.value), printed


def failure_line(printed: str) -> str:
    return next(line for line in printed.splitlines() if "FAILED" in line)


# --- ingest -----------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", [[], ["--sync"], ["--dry-run"], ["--sync", "--json"]])
def test_ingest_unknown_format_lists_the_formats(files, mode, capsys):
    error, printed = run("ingest", str(files / "orders.json"), "--format", "magento", *mode, capsys=capsys)

    assert error.startswith("Unknown format 'magento'; use one of: auto, x12, edifact, csv, json,")
    assert "karrio" in error
    assert "\n" not in error
    assert printed == ""


@pytest.mark.django_db(transaction=True)
def test_ingest_missing_file_and_unknown_partner(files, warehouse, capsys):
    error, _ = run("ingest", str(files / "missing.edi"), "--partner", "NORTHDC", capsys=capsys)
    assert error == f"{files / 'missing.edi'}: no such file or folder"

    error, _ = run("ingest", str(files / "orders.json"), "--partner", "NOPE", capsys=capsys)
    assert error.startswith("Unknown partner 'NOPE'")


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("name", "extra", "reason"),
    [
        ("empty.edi", [], "the message is empty"),
        ("garbage.bin", [], "could not tell the format: not X12, EDIFACT, canonical JSON"),
        ("garbage.bin", ["--format", "x12"], "not an X12 interchange: expected 'ISA' at the start"),
        ("garbage.bin", ["--format", "karrio"], "the body is not UTF-8 text"),
        ("truncated.edi", [], TRUNCATED),
    ],
    ids=["empty", "garbage", "garbage-as-x12", "garbage-as-karrio", "truncated-isa"],
)
def test_ingest_sync_names_the_file_and_the_reason(files, warehouse, name, extra, reason, capsys):
    error, printed = run("ingest", str(files / name), "--partner", "NORTHDC", "--sync", *extra, capsys=capsys)

    assert error == "1 file(s) failed; see the reasons above."
    assert failure_line(printed).startswith(f"  FAILED {files / name}: ")
    assert reason in failure_line(printed)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("name", "extra", "reason"),
    [
        ("empty.edi", [], "error: the message is empty"),
        ("empty.edi", ["--format", "x12"], "error: the message is empty"),
        ("garbage.bin", [], "error: could not tell the format"),
        ("truncated.edi", [], f"error: {TRUNCATED}"),
    ],
    ids=["empty", "empty-as-x12", "garbage", "truncated-isa"],
)
def test_ingest_dry_run_says_why_a_file_cannot_be_read(files, warehouse, name, extra, reason, capsys):
    call_command("ingest", str(files / name), "--partner", "NORTHDC", "--dry-run", *extra)

    printed = capsys.readouterr().out
    assert "Traceback" not in printed
    assert printed.startswith(f"{files / name} [")
    assert reason in printed
    assert not InboundMessage.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_ingest_a_file_that_cannot_be_read_is_reported_and_the_others_ingested(files, warehouse, capsys, monkeypatch):
    unreadable = files / "orders.json"
    read_bytes = Path.read_bytes

    def refusing(path: Path) -> bytes:
        if path == unreadable:
            raise PermissionError(13, "Permission denied")
        return read_bytes(path)

    monkeypatch.setattr(Path, "read_bytes", refusing)
    x12 = DOCUMENTS / "x12" / "856_bol_only.edi"

    error, printed = run("ingest", str(unreadable), str(x12), "--partner", "NORTHDC", "--sync", capsys=capsys)

    assert error == "1 file(s) failed; see the reasons above."
    assert failure_line(printed) == f"  FAILED {unreadable}: cannot read the file: Permission denied"
    assert "Messages stored 1" in printed


@pytest.mark.django_db(transaction=True)
def test_ingest_sync_keeps_a_message_whose_processing_broke_as_a_dead_letter(files, warehouse, capsys, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("the disk is full")

    monkeypatch.setattr("apps.ingest.management.commands.ingest.message_process", broken)
    path = DOCUMENTS / "x12" / "856_bol_only.edi"

    error, printed = run("ingest", str(path), "--partner", "NORTHDC", "--sync", capsys=capsys)

    assert error == "1 file(s) failed; see the reasons above."
    assert failure_line(printed) == f"  FAILED {path}: processing failed: RuntimeError('the disk is full')"
    message = InboundMessage.objects.get()
    assert message.status == InboundMessage.Status.FAILED


@pytest.mark.django_db(transaction=True)
def test_ingest_an_856_known_only_by_its_bill_of_lading(warehouse, tmp_path, capsys):
    Partner.objects.create(code="ERP", name="ERP", kind=Partner.Kind.ERP)
    order = tmp_path / "order.json"
    references = [{"kind": "order", "value": "SO-88120"}, {"kind": "po", "value": "PO-88120"}]
    order.write_bytes(as_body(order_created("SO-88120", references=references)))
    call_command("ingest", str(order), "--partner", "ERP", "--sync")

    call_command("ingest", str(DOCUMENTS / "x12" / "856_bol_only.edi"), "--partner", "NORTHDC", "--sync")

    assert "events applied 1" in capsys.readouterr().out.splitlines()[-1]
    shipment = Shipment.objects.get()
    assert shipment.number == "BOL-5521907"
    assert {(ref.kind, ref.value) for ref in shipment.references.all()} >= {
        ("bol", "BOL-5521907"),
        ("asn", "PL-300981"),
        ("pro", "PRO-880214"),
    }


# --- the other commands -----------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("command", "args", "message"),
    [
        ("partner", ["ACME", "--kind", "pigeon"], "argument --kind: invalid choice: 'pigeon'"),
        ("partner", ["ACME", "--kind", "erp", "--time-zone", "Mars/Olympus"], "Unknown time zone 'Mars/Olympus'"),
        ("partner", ["A" * 41, "--kind", "erp"], "code: Ensure this value has at most 40 characters (it has 41)"),
        ("partner", ["ACME", "--kind", "erp", "--edi-id", "ACMEUS"], "'ACMEUS' is not QUALIFIER:ID"),
        ("timeline", ["SO-NOWHERE"], "No order found for 'SO-NOWHERE'."),
        ("replay", [], "Give message ids, or --all."),
        ("replay", ["twelve"], "argument ids: invalid int value: 'twelve'"),
        ("replay", ["--all", "--partner", "NOPE"], "Unknown partner 'NOPE'."),
        ("kpis", ["refresh"], "argument action: invalid choice: 'refresh'"),
        ("seed_demo", ["--orders", "5"], "--orders must be at least"),
        ("seed_demo", ["--user", "demo"], "--user and --password go together"),
        ("simulate", ["--rate", "0"], "--rate must be a positive number of messages per second, not 0.0"),
        ("simulate", ["--rate", "nan"], "--rate must be a positive number of messages per second, not nan"),
        ("simulate", ["--rate", "fast"], "argument --rate: invalid float value: 'fast'"),
        ("simulate", ["--duration", "-5"], "--duration must be a number of seconds, 0 or more, not -5.0"),
        ("simulate", ["--orders-per-batch", "0"], "--orders-per-batch must be between 1 and"),
        ("simulate", ["--base-url", "http://[::1"], "--base-url 'http://[::1' is not a URL: Invalid IPv6 URL"),
        ("simulate", ["--base-url", "http://127.0.0.1:port"], "--base-url 'http://127.0.0.1:port' is not a URL"),
        ("simulate", ["--base-url", "ftp://127.0.0.1"], "--base-url must be an http(s) URL, not 'ftp://127.0.0.1'"),
    ],
)
def test_bad_arguments_are_one_clear_error(command, args, message, capsys):
    error, _ = run(command, *args, capsys=capsys)

    assert message in error


def test_simulate_refuses_a_file_as_its_inbox(tmp_path, capsys):
    (tmp_path / "inbox").write_text("")

    error, _ = run("simulate", "--once", "--inbox-dir", str(tmp_path / "inbox"), capsys=capsys)

    assert error == f"--inbox-dir {tmp_path / 'inbox'} is a file, not a folder"


# --- as a user runs them ------------------------------------------------------------------------


def manage(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=os.environ.copy(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["ingest", "{tmp}/orders.json", "--format", "shopify-plus"], 1, "CommandError: Unknown format 'shopify-plus'"),
        (["ingest", "{tmp}/missing.edi", "--sync"], 1, "CommandError: {tmp}/missing.edi: no such file or folder"),
        (["replay", "twelve"], 2, "error: argument ids: invalid int value: 'twelve'"),
    ],
    ids=["unknown-format", "missing-file", "bad-option-value"],
)
def test_run_from_the_shell_a_bad_argument_is_one_line_on_stderr(files, args, code, message):
    result = manage(*(arg.replace("{tmp}", str(files)) for arg in args))

    assert result.returncode == code
    assert "Traceback" not in result.stdout + result.stderr
    assert message.replace("{tmp}", str(files)) in result.stderr.strip().splitlines()[-1]

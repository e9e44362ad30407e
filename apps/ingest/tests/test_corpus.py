"""Every sample document is read as its expected file says (no database).

See :mod:`apps.ingest.tests.corpus` for the expected files and how to (re)write one."""

import json
import shutil

import pytest

from apps.ingest.tests import corpus

SAMPLES = corpus.samples()


@pytest.mark.parametrize("sample", SAMPLES, ids=[str(path.relative_to(corpus.DOCUMENTS)) for path in SAMPLES])
def test_sample_becomes_its_expected_events(sample):
    problems = corpus.check(sample)
    assert not problems, "\n".join(problems)


def test_the_corpus_covers_every_folder_and_expected_files_are_named_by_their_sample():
    assert {path.parent.name for path in SAMPLES} == {"csv", "edifact", "json", "x12"}
    orphans = [
        path.name
        for path in corpus.DOCUMENTS.rglob(f"*{corpus.SUFFIX}")
        if not path.with_name(path.name.removesuffix(corpus.SUFFIX)).is_file()
    ]
    assert orphans == []


@pytest.fixture
def new_sample(tmp_path):
    sample = tmp_path / "status.csv"
    sample.write_bytes(b"Parcel;State;When\n1Z1;delivered;2026-11-20T08:00:00Z\n1Z2;teleported;2026-11-20T09:00:00Z\n")
    return sample


MAPPING = json.dumps({"csv": {"columns": {"tracking": "Parcel", "status": "State", "occurred_at": "When"}}})


def test_a_new_sample_gets_its_expected_file_written_and_then_passes(new_sample, capsys):
    assert corpus.main(["--write", str(new_sample), "--partner", "CARRIER", "--mapping", MAPPING]) == 0
    expected = json.loads(corpus.expected_path(new_sample).read_text())
    assert expected["format"] == "csv"  # told from the header, as ingest --format auto would
    assert expected["context"]["partner"] == "CARRIER"
    assert [event["kind"] for event in expected["events"]] == ["shipment.delivered", "shipment.status_unmapped"]
    assert expected["unmapped_codes"] == ["teleported"]
    assert corpus.check(new_sample) == []


def test_a_changed_outcome_shows_as_a_diff(new_sample, capsys):
    corpus.main(["--write", str(new_sample), "--partner", "CARRIER", "--mapping", MAPPING])
    path = corpus.expected_path(new_sample)
    expected = json.loads(path.read_text())
    expected["events"][0]["kind"] = "shipment.in_transit"
    path.write_text(json.dumps(expected))
    [problem] = corpus.check(new_sample)
    assert '-      "kind": "shipment.in_transit",' in problem.splitlines()
    assert '+      "kind": "shipment.delivered",' in problem.splitlines()


def test_rewriting_keeps_the_context_and_description(new_sample):
    corpus.main(["--write", str(new_sample), "--partner", "CARRIER", "--mapping", MAPPING, "--shows", "a status"])
    corpus.main(["--write", str(new_sample)])
    expected = json.loads(corpus.expected_path(new_sample).read_text())
    assert (expected["shows"], expected["context"]["partner"]) == ("a status", "CARRIER")


def test_a_sample_read_as_another_format_is_reported(tmp_path):
    sample = tmp_path / "orders.edi"
    shutil.copy(corpus.DOCUMENTS / "edifact" / "orders_d96a.edi", sample)
    corpus.main(["--write", str(sample), "--partner", "BIGRETAIL"])
    path = corpus.expected_path(sample)
    path.write_text(path.read_text().replace('"format": "edifact"', '"format": "x12"'))
    problems = corpus.check(sample)
    assert problems[0] == "--format auto reads it as edifact, not x12"


def test_a_sample_without_expected_file_says_how_to_write_one(new_sample, capsys):
    with pytest.raises(corpus.CorpusError, match="has no expected file; write it with `python -m apps.ingest"):
        corpus.check(new_sample)
    assert corpus.main(["--write", str(new_sample)]) == 2
    assert "the format cannot be told from the bytes" in capsys.readouterr().err

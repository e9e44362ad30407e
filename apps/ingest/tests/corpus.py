"""The corpus of sample documents and the events each must become.

Every file under ``documents/<folder>/`` is a sample written in the shape a real partner sends;
next to it, ``<file name>.expected.json`` says how it is read::

    {
      "shows": "what the sample is there for (its version, its quirk)",
      "format": "x12",                  # what --format auto tells from the bytes (and the channel)
      "context": {"partner": "ACMEWMS", "time_zone": "America/Chicago",
                  "received_at": "2026-11-22T06:00:00+00:00", "mapping": {...}, "customer": null},
      "events": [...],                  # each event as JSON, without its raw fragment and source
      "warnings": [...], "unsupported": [...], "unmapped_codes": [...],
      "acknowledgments": [{"format": "x12", "status": "accepted", "control_number": "101"}]
    }

or, for a sample that must be refused, ``"error": "..."`` instead of the events. ``context`` is
what the channel and partner would give the parser (``mapping`` is the channel's
``mapping_overrides``): the format is found as ingest finds it for a message sent without one,
from the channel's adapter, the document's shape, or a CSV header matching the channel's columns.

``apps/ingest/tests/test_corpus.py`` reads every sample and compares. To add a sample, or to
accept a change in what one becomes, (re)write its expected file from what the parsers make now,
then read the difference before committing it::

    python -m apps.ingest.tests.corpus --write apps/ingest/tests/documents/x12/856_new.edi \\
        --partner ACMEWMS --time-zone America/Chicago
    python -m apps.ingest.tests.corpus          # compare every sample, print the differences

An existing expected file keeps its ``shows`` and ``context`` unless options replace them.
"""

import argparse
import difflib
import json
import os
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

DOCUMENTS = Path(__file__).parent / "documents"
SUFFIX = ".expected.json"
RECEIVED_AT = "2026-11-22T06:00:00+00:00"
EVENT_FIELDS_LEFT_OUT = ("raw", "source", "schema_version")


class CorpusError(ValueError):
    """A sample or its expected file cannot be used as it is; the message says what to do."""


def samples() -> list[Path]:
    """Every sample document, in a stable order (hidden files and expected files left out)."""
    return sorted(
        path
        for path in DOCUMENTS.rglob("*")
        if path.is_file() and not path.name.startswith(".") and not path.name.endswith(SUFFIX)
    )


def expected_path(sample: Path) -> Path:
    return sample.with_name(sample.name + SUFFIX)


def load_expected(sample: Path) -> dict[str, Any]:
    path = expected_path(sample)
    if not path.exists():
        raise CorpusError(
            f"{sample.name} has no expected file; write it with "
            f"`python -m apps.ingest.tests.corpus --write {_shown_path(sample)}` and check what it holds"
        )
    try:
        expected = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise CorpusError(f"{path.name} is not valid JSON: {exc}") from exc
    if not isinstance(expected, dict) or "format" not in expected or "context" not in expected:
        raise CorpusError(f"{path.name} must be an object with at least format and context")
    return expected


def context_of(settings: dict[str, Any]) -> Any:
    from apps.ingest.parsers import ParseContext

    received = settings.get("received_at", RECEIVED_AT)
    return ParseContext(
        partner=settings.get("partner"),
        channel=settings.get("channel"),
        time_zone=settings.get("time_zone", "UTC"),
        mapping=settings.get("mapping") or {},
        received_at=datetime.fromisoformat(received) if received else None,
        customer=settings.get("customer"),
    )


def detected_format(body: bytes, mapping: dict[str, Any]) -> str | None:
    """The format ingest would give a message sent without one by a channel with ``mapping``:
    the channel's adapter, else what the bytes look like, else CSV when the header row matches
    the channel's CSV columns."""
    from apps.ingest.parsers import ParseError, detect_format
    from apps.ingest.parsers.csv_feed import channel_matching, looks_like

    fmt = mapping.get("adapter") or detect_format(body)
    if fmt is None and looks_like(body):
        try:
            channel_matching(body, {"sample": mapping})
        except ParseError:
            return None
        return "csv"
    return fmt


def outcome(sample: Path, fmt: str, settings: dict[str, Any]) -> dict[str, Any]:
    """What the sample becomes now, in the shape of an expected file's outcome."""
    from apps.ingest.parsers import ParseError, get_parser

    try:
        document = get_parser(fmt).parse(sample.read_bytes(), context_of(settings))
    except ParseError as exc:
        return {"error": str(exc)}
    result: dict[str, Any] = {
        "events": [_event(event.to_json()) for event in document.events],
        "warnings": document.warnings,
        "unsupported": document.unsupported,
        "unmapped_codes": document.unmapped_codes,
        "acknowledgments": [
            {"format": ack.format, "status": ack.status, "control_number": ack.control_number}
            for ack in document.acknowledgments
        ],
    }
    return {key: value for key, value in result.items() if value or key == "events"}


def _event(data: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in data.items() if key not in EVENT_FIELDS_LEFT_OUT}


def check(sample: Path) -> list[str]:
    """Problems with one sample: empty when it is read as its expected file says."""
    expected = load_expected(sample)
    settings = expected["context"]
    problems = []
    detected = detected_format(sample.read_bytes(), settings.get("mapping") or {})
    if detected != expected["format"]:
        problems.append(f"--format auto reads it as {detected or 'nothing'}, not {expected['format']}")
    wanted = {key: value for key, value in expected.items() if key not in ("shows", "format", "context")}
    if "error" not in wanted:
        wanted.setdefault("events", [])
    actual = outcome(sample, expected["format"], settings)
    if actual != wanted:
        problems.append(difference(wanted, actual))
    return problems


def difference(expected: dict[str, Any], actual: dict[str, Any]) -> str:
    lines = difflib.unified_diff(
        _pretty(expected).splitlines(), _pretty(actual).splitlines(), "expected", "parsed now", lineterm=""
    )
    return "\n".join(lines)


def _pretty(data: Any, *, sort_keys: bool = True) -> str:
    return json.dumps(data, indent=2, sort_keys=sort_keys, ensure_ascii=False)


def write(sample: Path, options: argparse.Namespace) -> Path:
    """(Re)write the sample's expected file from what the parsers make of it now."""
    path = expected_path(sample)
    previous = load_expected(sample) if path.exists() else {}
    settings = dict(previous.get("context") or {"partner": "PARTNER", "time_zone": "UTC", "received_at": RECEIVED_AT})
    for name in ("partner", "time_zone", "customer"):
        if getattr(options, name):
            settings[name] = getattr(options, name)
    if options.mapping:
        settings["mapping"] = json.loads(options.mapping)
    body = sample.read_bytes()
    fmt = options.format or detected_format(body, settings.get("mapping") or {}) or previous.get("format")
    if fmt is None:
        raise CorpusError(
            f"{sample.name}: the format cannot be told from the bytes; give --format, or --mapping with "
            "the channel's adapter or CSV columns"
        )
    shows = options.shows or previous.get("shows") or ""
    expected = {"shows": shows, "format": fmt, "context": settings, **outcome(sample, fmt, settings)}
    path.write_text(_pretty(expected, sort_keys=False) + "\n", encoding="utf-8")
    return path


def _shown_path(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m apps.ingest.tests.corpus", description=__doc__.split("\n")[0])
    parser.add_argument("--write", nargs="+", type=Path, metavar="SAMPLE", help="(Re)write these expected files.")
    parser.add_argument("--format", help="The parser to use when the bytes do not tell (a new sample only).")
    parser.add_argument("--partner", help="The sending partner's code.")
    parser.add_argument("--time-zone", help="The partner's IANA time zone.")
    parser.add_argument("--customer", help="The customer of an eCommerce shop's channel.")
    parser.add_argument("--mapping", help="The channel's mapping_overrides, as JSON.")
    parser.add_argument("--shows", help="One line: what the sample is there for.")
    options = parser.parse_args(argv)
    try:
        if options.write:
            for sample in options.write:
                if not sample.is_file():
                    raise CorpusError(f"{sample}: no such file")
                sys.stdout.write(f"wrote {_shown_path(write(sample, options))}\n")
            return 0
        failures = 0
        for sample in samples():
            try:
                problems = check(sample)
            except CorpusError as exc:
                problems = [str(exc)]
            failures += bool(problems)
            for problem in problems:
                sys.stdout.write(f"{sample.relative_to(DOCUMENTS)}:\n{problem}\n\n")
        sys.stdout.write(f"{len(samples())} samples, {failures} not read as expected\n")
        return 1 if failures else 0
    except (CorpusError, json.JSONDecodeError) as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2


def _setup_django() -> None:
    """Run as a script: load the settings. The parsers read some (our EDIFACT identity) and nothing
    secret, so the tests' key will do. (Set up twice in one process, Django would configure
    logging again, onto whatever stream is stderr at that moment.)"""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controltower.settings")
    os.environ.setdefault("SECRET_KEY", "test-only-secret-key-not-for-production-use-0123456789")
    import django

    django.setup()


if __name__ == "__main__":
    _setup_django()
    sys.exit(main())

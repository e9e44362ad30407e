"""The parsers by format name, and detection of a document's format from its bytes."""

from importlib import import_module
from typing import Protocol

from apps.ingest.parsers.base import ParseContext, ParsedDocument, ParseError

__all__ = ["ParseContext", "ParseError", "ParsedDocument", "Parser", "detect_format", "get_parser", "sender_ids"]

MODULES = {
    "x12": "apps.ingest.parsers.x12",
    "edifact": "apps.ingest.parsers.edifact",
    "csv": "apps.ingest.parsers.csv_feed",
    "json": "apps.ingest.parsers.canonical_json",
    "json_mapping": "apps.ingest.parsers.json_mapping",
    "shopify": "apps.ingest.parsers.shopify",
}
# Checked in this order: EDI envelopes are unambiguous, then our own JSON, then aggregators'.
DETECTION_ORDER = ("x12", "edifact", "json")


class Parser(Protocol):
    def parse(self, body: bytes, context: ParseContext) -> ParsedDocument: ...


def _aggregators():
    return import_module("apps.ingest.parsers.aggregators")


def aggregator_names() -> list[str]:
    return sorted(_aggregators().ADAPTERS)


def known_formats() -> list[str]:
    return [*MODULES, *aggregator_names()]


def get_parser(name: str) -> Parser:
    """The parser for a format name; raises ParseError for a name we do not know."""
    if name in MODULES:
        return import_module(MODULES[name])
    adapters = _aggregators().ADAPTERS
    if name in adapters:
        return adapters[name]
    raise ParseError(f"unknown format {name!r}; use one of: {', '.join(known_formats())}")


def detect_format(body: bytes) -> str | None:
    """X12, EDIFACT and canonical JSON by their shape; an aggregator's JSON when unambiguous."""
    for name in DETECTION_ORDER:
        if import_module(MODULES[name]).looks_like(body):
            return name
    return _aggregators().detect(body)


def sender_ids(name: str, body: bytes) -> list[tuple[str, str]]:
    """EDI interchange sender ids, to find the sending partner; empty for other formats."""
    if name not in ("x12", "edifact"):
        return []
    return import_module(MODULES[name]).sender_ids(body)

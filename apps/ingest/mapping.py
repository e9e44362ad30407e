"""What a channel's ``mapping_overrides`` may hold, checked before it is saved, and what a parser's
unmapped codes mean for the person fixing them.

The parsers read these keys (each module's docstring describes its own); this module knows them
all, so that an Integration Admin is told "unknown key" or "not an event kind" when saving rather
than finding dead letters later. Pure: no database.
"""

import codecs
import json
from collections.abc import Callable
from typing import Any

from apps.ingest.parsers import aggregator_names, known_formats
from apps.ingest.parsers.aggregators.tracking import Milestone
from apps.ingest.parsers.csv_feed import FEED_FIELDS
from apps.ingest.parsers.inventory import KINDS as QUANTITY_KINDS
from apps.ingest.parsers.json_mapping import LOCATION_PARTS
from apps.ingest.parsers.x12_inventory import EFFECTS
from apps.timeline.events import EventKind, ReferenceKind

MAX_MAPPING_CHARS = 100_000
MAX_SHOWN_KEYS = 12

Problems = list[str]

TRACKING_HELP = "a milestone (" + ", ".join(Milestone) + ") or an event kind such as shipment.delivered"


def _object(value: Any, name: str, problems: Problems) -> dict[str, Any]:
    if not isinstance(value, dict):
        problems.append(f"{name}: expected a JSON object, found {_type(value)}")
        return {}
    return value


def _type(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "text", bool: "true/false", type(None): "null"}.get(
        type(value), "a number"
    )


def _text(value: Any, name: str, problems: Problems, *, required: bool = False) -> None:
    if value is None and not required:
        return
    if not isinstance(value, str):
        problems.append(f"{name}: expected text{' (required)' if required else ''}, found {_type(value)}")
    elif required and not value.strip():
        problems.append(f"{name}: is empty")


def _unknown(mapping: dict[str, Any], known: set[str] | tuple[str, ...], name: str, problems: Problems) -> None:
    for key in sorted(set(mapping) - set(known), key=str):
        shown = ", ".join(sorted(known)[:MAX_SHOWN_KEYS]) or "nothing"
        problems.append(f"{name}{key}: unknown key; {name or 'this channel '}reads {shown}")


def _codes(value: Any, name: str, problems: Problems, accepts: Callable[[str], bool], expected: str) -> None:
    for code, target in _object(value, name, problems).items():
        if not str(code).strip():
            problems.append(f"{name}: an empty code")
        elif not isinstance(target, str) or not accepts(target):
            problems.append(f"{name}[{code!r}]: {target!r} is not {expected}")


def _is_kind(value: str) -> bool:
    return value in EventKind._value2member_map_


def _is_shipment_kind(value: str) -> bool:
    return _is_kind(value) and EventKind(value).family == "shipment"


def _is_tracking_target(value: str) -> bool:
    return value in Milestone._value2member_map_ or _is_kind(value)


def _status_codes(channel_format: str) -> Callable[[Any, str, Problems], None]:
    """X12 214 maps to shipment kinds, EDIFACT to any kind; feeds read as trackers take milestones too."""
    if channel_format == "x12":
        return lambda v, n, p: _codes(v, n, p, _is_shipment_kind, "a shipment event kind such as shipment.delivered")
    if channel_format == "edifact":
        return lambda v, n, p: _codes(v, n, p, _is_kind, "an event kind such as shipment.delivered")
    return lambda v, n, p: _codes(v, n, p, _is_tracking_target, TRACKING_HELP)


def _reference_qualifiers(value: Any, name: str, problems: Problems) -> None:
    kinds = ", ".join(ReferenceKind)
    _codes(value, name, problems, lambda v: v in ReferenceKind._value2member_map_, f"a reference kind ({kinds})")


def _quantity_qualifiers(value: Any, name: str, problems: Problems) -> None:
    expected = f"a kind of quantity ({', '.join(sorted(QUANTITY_KINDS))})"
    _codes(value, name, problems, lambda v: v in QUANTITY_KINDS, expected)


def _adjustment_reasons(value: Any, name: str, problems: Problems) -> None:
    _codes(value, name, problems, lambda v: v in EFFECTS, f"one of {', '.join(EFFECTS)}")


def _warehouses(value: Any, name: str, problems: Problems) -> None:
    _codes(value, name, problems, lambda v: bool(v.strip()) and len(v) <= 40, "a partner code")


def _csv(value: Any, name: str, problems: Problems) -> None:
    config = _object(value, name, problems)
    _unknown(config, ("feed", "delimiter", "encoding", "columns", "time_format", "status_codes"), f"{name}.", problems)
    feed = config.get("feed") or "shipment_status"
    if feed not in FEED_FIELDS:
        problems.append(f"{name}.feed: {feed!r} is not a CSV feed; use one of {', '.join(FEED_FIELDS)}")
        feed = None
    delimiter = config.get("delimiter")
    if delimiter is not None and (not isinstance(delimiter, str) or len(delimiter) != 1):
        problems.append(f"{name}.delimiter: expected one character, found {delimiter!r}")
    encoding = config.get("encoding")
    _text(encoding, f"{name}.encoding", problems)
    if isinstance(encoding, str) and encoding:
        try:
            codecs.lookup(encoding)
        except LookupError:
            problems.append(f"{name}.encoding: {encoding!r} is not an encoding Python knows")
    _text(config.get("time_format"), f"{name}.time_format", problems)
    columns = _object(config.get("columns", {}), f"{name}.columns", problems)
    if feed:
        _unknown(columns, FEED_FIELDS[feed], f"{name}.columns.", problems)
    for field, header in columns.items():
        _text(header, f"{name}.columns.{field}", problems, required=True)
    if "status_codes" in config:
        _status_codes("csv")(config["status_codes"], f"{name}.status_codes", problems)


JSON_PATHS = ("items", "tracking_number", "status", "occurred_at", "message", "carrier", "estimated_delivery")


def _json(value: Any, name: str, problems: Problems) -> None:
    config = _object(value, name, problems)
    _unknown(config, (*JSON_PATHS, "location", "references", "status_codes"), f"{name}.", problems)
    for path in ("tracking_number", "status"):
        _text(config.get(path), f"{name}.{path}", problems, required=True)
    for path in ("items", "message", "carrier", "estimated_delivery"):
        _text(config.get(path), f"{name}.{path}", problems)
    when = config.get("occurred_at")
    if isinstance(when, list):
        if len(when) != 2 or not all(isinstance(part, str) and part for part in when):
            problems.append(f'{name}.occurred_at: expected a path, or ["date path", "time path"]')
    else:
        _text(when, f"{name}.occurred_at", problems)
    for part_name, known in (("location", LOCATION_PARTS), ("references", tuple(ReferenceKind))):
        part = _object(config.get(part_name, {}), f"{name}.{part_name}", problems)
        _unknown(part, known, f"{name}.{part_name}.", problems)
        for key, path in part.items():
            _text(path, f"{name}.{part_name}.{key}", problems, required=True)
    if "status_codes" in config:
        _status_codes("json")(config["status_codes"], f"{name}.status_codes", problems)


def _adapter(value: Any, name: str, problems: Problems) -> None:
    if value not in ("auto", *known_formats()):
        problems.append(f"{name}: {value!r} is not a format; use one of {', '.join(known_formats())}")


def _aggregator(value: Any, name: str, problems: Problems) -> None:
    if value not in aggregator_names():
        problems.append(f"{name}: {value!r} is not an aggregator; use one of {', '.join(aggregator_names())}")


def _text_key(value: Any, name: str, problems: Problems) -> None:
    _text(value, name, problems, required=True)


def _order_prefix(value: Any, name: str, problems: Problems) -> None:
    if not isinstance(value, str) or not value.strip() or len(value) > 20:
        problems.append(f'{name}: expected a short text (at most 20 characters), such as "OUTDOOR-"')


def _parser_keys(channel_format: str) -> dict[str, Callable[[Any, str, Problems], None]]:
    return {
        "status_codes": _status_codes(channel_format),
        "reference_qualifiers": _reference_qualifiers,
        "quantity_qualifiers": _quantity_qualifiers,
        "warehouses": _warehouses,
        "adjustment_reasons": _adjustment_reasons,
        "csv": _csv,
        "json": _json,
        "adapter": _adapter,
        "aggregator": _aggregator,
        "promised_at_attribute": _text_key,
        "order_prefix": _order_prefix,
    }


# The keys each channel format reads; webhook and API channels carry any parser's documents.
FORMAT_KEYS: dict[str, tuple[str, ...]] = {
    "x12": ("status_codes", "quantity_qualifiers", "warehouses", "adjustment_reasons"),
    "edifact": ("status_codes", "reference_qualifiers", "quantity_qualifiers", "warehouses"),
    "csv": ("csv",),
    "json": (),
    "poll": ("status_codes", "json", "aggregator", "promised_at_attribute"),
}
POLL_KEYS = ("url", "method", "body", "adapter", "rate_per_minute", "timeout_seconds", "batch", "breaker")


def channel_mapping_problems(channel_format: str, mapping: dict[str, Any]) -> list[str]:
    """Every problem of ``mapping`` for a channel of ``channel_format``, one line each, naming the
    key (``csv.columns.tracking``, ``status_codes['X9']``) and what it expects."""
    problems: Problems = []
    if len(json.dumps(mapping, default=str)) > MAX_MAPPING_CHARS:
        return [f"the mapping is longer than {MAX_MAPPING_CHARS:,} characters"]
    checks = _parser_keys(channel_format)
    readable = FORMAT_KEYS.get(channel_format, tuple(checks))
    if channel_format == "poll":
        _poll(mapping, problems)
        readable = (*readable, *POLL_KEYS)
    _unknown(mapping, readable, "", problems)
    for key in readable:
        if key in mapping and key in checks and not (channel_format == "poll" and key == "adapter"):
            checks[key](mapping[key], key, problems)
    return problems


def _poll(mapping: dict[str, Any], problems: Problems) -> None:
    from apps.ingest.polling import PollConfigError, poll_config

    try:
        poll_config({key: value for key, value in mapping.items() if key in POLL_KEYS})
    except PollConfigError as exc:
        problems += str(exc).split("; ")


# Where each format's unmapped codes come from, for the person mapping them.
UNMAPPED_WHERE = {
    "x12": "AT701 status code of a 214",
    "edifact": "STS status code",
    "csv": "status column",
    "json_mapping": "status field",
}


def unmapped_explained(fmt: str | None, codes: list[str]) -> list[str]:
    """One line per distinct unmapped code: where it was read and how to map it."""
    lines = []
    for code in sorted(set(codes)):
        segment, colon, value = code.partition(":")
        if colon and segment in ("QTY01", "W1901"):
            key = "quantity_qualifiers" if segment == "QTY01" else "adjustment_reasons"
            lines.append(f"{value}: {segment} code no table knows; map it with {key} {{{json.dumps(value)}: ...}}")
            continue
        where = UNMAPPED_WHERE.get(fmt or "", "status")
        target = "csv.status_codes" if fmt == "csv" else "status_codes"
        lines.append(f"{code}: {where} no table knows; map it with {target} {{{json.dumps(code)}: <event kind>}}")
    return lines

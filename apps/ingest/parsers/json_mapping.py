"""Generic JSON tracking feeds, for aggregators without an adapter: paths configured per channel.

``context.mapping["json"]``::

    {
        "items": "path.to.list",            # "" or absent: the body itself (a list, or one object)
        "tracking_number": "path",          # required
        "status": "path",                   # required
        "occurred_at": "path",              # or ["date path", "time path"] for separate fields
        "message": "path",
        "carrier": "path",
        "estimated_delivery": "path",
        "location": {"name": "path", "city": "path", "state": "path", "postal_code": "path",
                     "country": "path", "latitude": "path", "longitude": "path"},
        "references": {"order": "path", "po": "path", ...},
        "status_codes": {"Zugestellt": "delivered", ...}   # code -> milestone or event kind
    }

Paths are dotted and take list indexes (``events.0.time``), relative to each item. Each item is
one status update; statuses go through the generic table (:data:`GENERIC_STATUSES`) and the
channel's ``status_codes``. Items without a tracking number are reported and skipped.
"""

from typing import Any

from apps.ingest.parsers.aggregators.tracking import (
    GENERIC_STATUSES,
    Checkpoint,
    Tracker,
    TrackingMapper,
    as_dict,
    codes,
    load_json,
    location,
    text,
)
from apps.ingest.parsers.base import ParseContext, ParsedDocument, ParseError, capped, collection_paused
from apps.timeline.events import ReferenceKind

REQUIRED = ("tracking_number", "status")
LOCATION_PARTS = ("name", "city", "state", "postal_code", "country", "latitude", "longitude")


def looks_like(body: bytes) -> bool:
    """Never: without the channel's paths no body is unambiguously ours; channels choose this format."""
    return False


def dig(data: Any, path: str) -> Any:
    """The value at a dotted path (``events.0.time``); None when any step is missing."""
    current = data
    for step in path.split(".") if path else []:
        if isinstance(current, list) and step.lstrip("-").isdigit():
            index = int(step)
            current = current[index] if -len(current) <= index < len(current) else None
        elif isinstance(current, dict):
            current = current.get(step)
        else:
            return None
    return current


def _config(context: ParseContext) -> dict[str, Any]:
    config = context.mapping.get("json")
    if not isinstance(config, dict):
        raise ParseError('the channel has no JSON mapping (mapping_overrides["json"] with the paths to read)')
    missing = [name for name in REQUIRED if not isinstance(config.get(name), str) or not config[name]]
    if missing:
        raise ParseError(f"the channel's JSON mapping has no path for: {', '.join(missing)}")
    return config


def _items(data: Any, path: str) -> list[Any]:
    items = dig(data, path)
    if isinstance(items, list):
        return items
    if isinstance(items, dict):
        return [items]
    raise ParseError(f"no list of items at {path or 'the root'!r}")


def _time(item: Any, path: Any) -> Any:
    if isinstance(path, list) and len(path) == 2:
        return (text(dig(item, path[0])), text(dig(item, path[1])))
    return dig(item, path) if isinstance(path, str) else None


def _references(item: Any, paths: dict[str, Any]) -> list[tuple[ReferenceKind, str]]:
    references = []
    for kind, path in paths.items():
        value = text(dig(item, path)) if isinstance(path, str) else ""
        if value and kind in frozenset(ReferenceKind):
            references.append((ReferenceKind(kind), value))
    return references


def _tracker(item: Any, config: dict[str, Any]) -> Tracker:
    places = as_dict(config.get("location"))
    place = {part: dig(item, places[part]) for part in LOCATION_PARTS if isinstance(places.get(part), str)}
    return Tracker(
        tracking_number=text(dig(item, config["tracking_number"])),
        carrier=text(dig(item, config.get("carrier") or "")),
        estimated_delivery=dig(item, config.get("estimated_delivery") or ""),
        references=_references(item, as_dict(config.get("references"))),
        checkpoints=[
            Checkpoint(
                time=_time(item, config.get("occurred_at")),
                codes=codes(dig(item, config["status"])),
                message=text(dig(item, config.get("message") or "")),
                location=location(**place),
                raw=item,
            )
        ],
    )


@collection_paused()
def parse(body: bytes, context: ParseContext) -> ParsedDocument:
    config = _config(context)
    items = _items(load_json(body), config.get("items") or "")
    mapper = TrackingMapper("json", GENERIC_STATUSES, context, overrides=config.get("status_codes"))
    for index, item in enumerate(items):
        tracker = _tracker(item, config)
        if not tracker.tracking_number or not tracker.checkpoints[0].codes:
            mapper.document.warnings.append(f"items[{index}]: no tracking number or status at the configured paths")
            continue
        if text(tracker.checkpoints[0].time) == "" and not isinstance(tracker.checkpoints[0].time, tuple):
            mapper.document.warnings.append(f"items[{index}]: no time at {config.get('occurred_at')!r}")
            continue
        mapper.document.events.extend(mapper.events(tracker))
    if not mapper.document.events:
        raise ParseError("no item could be read: " + "; ".join(mapper.document.warnings[:5] or ["no items"]))
    mapper.document.warnings = capped(mapper.document.warnings)
    return mapper.document

"""Tracking webhooks of shipping aggregators, one adapter per aggregator, written from its public docs.

``ADAPTERS`` maps each name to an :class:`~apps.ingest.parsers.aggregators.tracking.Adapter`
(``looks_like``/``parse`` like every parser module); :func:`detect` names the aggregator whose
shape a body has, only when exactly one matches. The package itself is a parser too: ``parse``
uses ``context.mapping["aggregator"]`` when the channel names one, else detection.
"""

from apps.ingest.parsers.aggregators import aftership, easypost, easyship, karrio, sendcloud, shipengine, shippo
from apps.ingest.parsers.aggregators.tracking import Adapter, quiet_json
from apps.ingest.parsers.base import ParseContext, ParsedDocument, ParseError

ADAPTERS: dict[str, Adapter] = {
    module.ADAPTER.name: module.ADAPTER
    for module in (easypost, shipengine, aftership, shippo, sendcloud, easyship, karrio)
}


def detect(body: bytes) -> str | None:
    """The aggregator whose webhook shape ``body`` has; None when none or several match."""
    data = quiet_json(body)
    if data is None:
        return None
    names = [name for name, adapter in ADAPTERS.items() if adapter.accepts(data)]
    return names[0] if len(names) == 1 else None


def looks_like(body: bytes) -> bool:
    return detect(body) is not None


def parse(body: bytes, context: ParseContext) -> ParsedDocument:
    name = context.mapping.get("aggregator") or detect(body)
    if name is None:
        raise ParseError(f"not the tracking webhook of a known aggregator ({', '.join(ADAPTERS)})")
    if name not in ADAPTERS:
        raise ParseError(f"unknown aggregator {name!r}; use one of: {', '.join(ADAPTERS)}")
    return ADAPTERS[name].parse(body, context)

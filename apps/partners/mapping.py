"""A channel's mapping overrides as data: what changed between two versions, which of those changes
touch references, freight or financial posting, and the checks a mapping must pass.

Partners are the ground floor: the format-specific checks belong to the parsers, which register
them here (``apps.ingest.apps``) rather than being imported.
"""

from collections.abc import Callable
from typing import Any

# A checker: (channel format, mapping) -> one line per problem; empty when the mapping is good.
Checker = Callable[[str, dict[str, Any]], list[str]]
_checkers: list[Checker] = []

# Paths whose values say what a document's references are.
REFERENCE_WORDS = frozenset(
    {
        "reference_qualifiers",
        "references",
        "order",
        "po",
        "shipment",
        "bol",
        "pro",
        "container",
        "tracking",
        "tracking_number",
        "invoice",
        "rma",
        "asn",
        "warehouses",
    }
)
FINANCIAL_WORDS = frozenset({"amount", "currency", "price", "unit_price", "invoice", "total", "tax"})
FREIGHT_WORDS = frozenset({"freight", "charge", "charges", "rate"})
MAX_SHOWN = 200  # characters of a changed value kept in the history


def register_checker(checker: Checker) -> None:
    if checker not in _checkers:
        _checkers.append(checker)


def mapping_problems(channel_format: str, mapping: Any) -> list[str]:
    """Every problem the registered checks find in ``mapping`` for a channel of ``channel_format``."""
    if not isinstance(mapping, dict):
        return ["the mapping must be a JSON object"]
    problems: list[str] = []
    for checker in _checkers:
        problems += checker(channel_format, mapping)
    return problems


def mapping_changes(before: Any, after: Any, path: str = "") -> list[dict[str, Any]]:
    """The leaves that differ between two mappings, as ``{"path", "before", "after"}`` (a key added
    has ``before`` None, a key removed ``after`` None), sorted by path."""
    objects = isinstance(before, dict), isinstance(after, dict)
    if all(objects) or (any(objects) and None in (before, after)):
        before, after = before or {}, after or {}
        changes: list[dict[str, Any]] = []
        for key in sorted(set(before) | set(after), key=str):
            inner = f"{path}.{key}" if path else str(key)
            changes += mapping_changes(before.get(key), after.get(key), inner)
        return changes
    if before == after:
        return []
    return [{"path": path or "(whole mapping)", "before": _shown(before), "after": _shown(after)}]


def _shown(value: Any) -> Any:
    if isinstance(value, str) and len(value) > MAX_SHOWN:
        return value[: MAX_SHOWN - 1] + "…"
    if isinstance(value, dict | list):
        text = repr(value)
        return text if len(text) <= MAX_SHOWN else text[: MAX_SHOWN - 1] + "…"
    return value


def sensitive_areas(changes: list[dict[str, Any]]) -> list[str]:
    """Which of references, freight and financial posting the changes touch: by the words of their
    paths (``csv.columns.po``, ``reference_qualifiers.BM``) and by the event kinds they map to or
    from (``freight.*``, ``invoice.*``)."""
    areas: set[str] = set()
    for change in changes:
        words = {word.lower() for word in str(change["path"]).split(".")}
        values = {str(change["before"]), str(change["after"])}
        if words & REFERENCE_WORDS:
            areas.add("references")
        if words & FREIGHT_WORDS or any(value.startswith("freight.") for value in values):
            areas.add("freight")
        if words & FINANCIAL_WORDS or any(value.startswith("invoice.") for value in values):
            areas.add("financial")
    return [area for area in ("references", "freight", "financial") if area in areas]

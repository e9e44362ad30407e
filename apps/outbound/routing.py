"""Which subscriptions an event goes to: kind patterns, customer and region scope, formats."""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from urllib.parse import urlsplit

from django.conf import settings

from apps.partners import network
from apps.partners.models import Partner
from apps.timeline.events import EventKind

KINDS = frozenset(kind.value for kind in EventKind)
FAMILIES = frozenset(kind.family for kind in EventKind)
# What an X12 subscription can carry besides 997s: each event kind with its transaction set.
X12_SETS = {EventKind.INVOICE_GENERATED.value: "810"}


def pattern_error(pattern: object) -> str | None:
    """Why ``pattern`` is not an event kind, a ``family.*`` wildcard or ``*``; None when it is."""
    if not isinstance(pattern, str) or not pattern:
        return f"{pattern!r} is not an event kind"
    if pattern == "*" or pattern in KINDS:
        return None
    family, _, rest = pattern.partition(".")
    if rest == "*" and family in FAMILIES:
        return None
    families = ", ".join(sorted(FAMILIES))
    return f"{pattern!r} is neither an event kind nor a wildcard such as shipment.* (families: {families})"


def kind_matches(patterns: Iterable[str], kind: str) -> bool:
    return any(fnmatchcase(kind, pattern) for pattern in patterns)


def target_host_error(url: str) -> str | None:
    """Why deliveries may not go to ``url``, as far as can be told when it is saved: a host outside
    ``OUTBOUND_ALLOWED_HOSTS``, or one the network guard refuses (plain http, an internal address,
    a name resolving to one now). The guard checks the addresses again each time it connects."""
    return allowed_hosts_error(url) or network.url_refusal(url, resolve_name=True)


def allowed_hosts_error(url: str) -> str | None:
    """Why ``url``'s host is outside ``OUTBOUND_ALLOWED_HOSTS``; None when it is in, or the list is
    empty. ``.example.com`` allows example.com and its subdomains."""
    allowed = settings.OUTBOUND_ALLOWED_HOSTS
    host = (urlsplit(url).hostname or "").lower()
    if not allowed or any(_host_matches(host, pattern.lower()) for pattern in allowed):
        return None
    return f"{host or url!r} is not an allowed target host (OUTBOUND_ALLOWED_HOSTS: {', '.join(allowed)})"


def _host_matches(host: str, pattern: str) -> bool:
    if pattern.startswith("."):
        return host == pattern[1:] or host.endswith(pattern)
    return host == pattern


def subscription_errors(
    *,
    partner: Partner | None,
    event_kinds: Sequence[object],
    format: str,
    acknowledgments: bool,
    target_url: str,
    channel_partner_id: int | None,
    has_channel: bool,
    has_edi_id: bool,
) -> dict[str, str]:
    """Field errors of a subscription, shared by the admin form and the API."""
    errors: dict[str, str] = {}
    if not isinstance(event_kinds, list | tuple):
        return {"event_kinds": "Give a list of event kinds or patterns."}
    problems = [error for error in map(pattern_error, event_kinds) if error]
    if problems:
        errors["event_kinds"] = "; ".join(problems)
    if not target_url and not has_channel:
        errors["target_url"] = "Give a target URL, or a channel whose outbox folder receives the documents."
    elif target_url and (host_error := target_host_error(target_url)):
        errors["target_url"] = f"{host_error}."
    if has_channel and partner is not None and channel_partner_id != partner.pk:
        errors["channel"] = "The channel must be one of this partner's."
    if format == "x12":
        unsupported = [k for k in event_kinds if isinstance(k, str) and k not in X12_SETS]
        if unsupported:
            errors["event_kinds"] = (
                f"X12 carries {', '.join(sorted(X12_SETS))} (as {', '.join(sorted(X12_SETS.values()))}) and 997s; "
                f"not {', '.join(map(str, unsupported))}"
            )
        if not has_edi_id:
            errors["partner"] = "X12 needs the partner's EDI interchange id (add one in the partner's EDI identifiers)."
    elif format == "edifact":
        if event_kinds:
            errors["event_kinds"] = "EDIFACT carries CONTRL acknowledgments only: leave the event kinds empty."
    elif acknowledgments:
        errors["acknowledgments"] = "Acknowledgments are EDI: choose X12 (997s) or EDIFACT (CONTRL)."
    if not event_kinds and not acknowledgments and "event_kinds" not in errors:
        errors["event_kinds"] = "Choose at least one event kind (or 997 acknowledgments)."
    return errors


@dataclass(frozen=True)
class OrderScope:
    id: int
    customer_id: int | None
    region: str


@dataclass(frozen=True)
class Route:
    """A subscription as routing needs it, loaded once per apply."""

    id: int
    patterns: tuple[str, ...]
    format: str
    customers: frozenset[int] | None  # None: any customer
    regions: frozenset[str] | None  # None: any region

    def order_for(self, kind: str, orders: Sequence[OrderScope]) -> tuple[bool, int | None]:
        """Whether an event of ``kind`` about ``orders`` goes here, and the order it is filed under."""
        if not kind_matches(self.patterns, kind):
            return False, None
        if self.format == "x12" and kind not in X12_SETS:
            return False, None
        if self.customers is None and self.regions is None:
            return True, min((order.id for order in orders), default=None)
        scoped = [
            order.id
            for order in orders
            if (self.customers is None or order.customer_id in self.customers)
            and (self.regions is None or order.region in self.regions)
        ]
        return (True, min(scoped)) if scoped else (False, None)


def route_of(
    *, id: int, partner: Partner, patterns: Sequence[str], format: str, customer_ids: set[int], regions: Sequence[str]
) -> Route:
    """A customer only ever receives its own orders, whatever the subscription's filter says."""
    customers: frozenset[int] | None = frozenset(customer_ids) if customer_ids else None
    if partner.kind == Partner.Kind.CUSTOMER:
        customers = frozenset({partner.pk}) & customers if customers is not None else frozenset({partner.pk})
    return Route(
        id=id,
        patterns=tuple(patterns),
        format=format,
        customers=customers,
        regions=frozenset(regions) if regions else None,
    )

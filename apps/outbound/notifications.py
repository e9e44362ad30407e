"""Customer e-mails on chosen milestones: at most one per (order, shipment, milestone).

The pending notification is written in the apply transaction (with the milestone); rendering
and sending happen after commit, in a task. A duplicate event, or a second source reporting the
same milestone, finds the notification already there and sends nothing.

``notifications_send`` claims each due notification with a conditional update, so two workers
never send the same one. A sender that dies after claiming leaves the claim to expire, and the
next run sends it again: at least once, never lost. SMTP failures are retried after a growing
delay, up to ``MAX_ATTEMPTS``; template and configuration errors fail at once, with the reason.

Templates are Django templates rendered by a restricted engine (no loaders, no ``load``,
``include``, ``extends``, ``debug``, ``url`` or ``lorem``; autoescape off for plain text) over the
plain strings of ``CONTEXT_VARIABLES``, never model objects.

Rendering is bounded, since staff write the templates and partners the values: a template is at
most ``MAX_TEMPLATE_LENGTH`` characters; filters that pad or repeat (``ljust``, ``floatformat``,
``join``…) take a literal argument of at most ``MAX_WIDTH``, checked whenever a template is
compiled; and a render stops with ``TemplateError`` past ``MAX_RENDERED`` characters of output or
``RENDER_SECONDS``, counted as each node renders (loops within loops included).
"""

import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.mail import EmailMessage, get_connection
from django.core.mail.backends.base import BaseEmailBackend
from django.core.validators import validate_email
from django.db import transaction
from django.db.models import F, Q
from django.template import Context, Engine, Library, Template, TemplateSyntaxError, defaultfilters, defaulttags
from django.template.base import FilterExpression, Node, Variable
from django.utils import timezone

from apps.outbound.models import (
    CustomerMilestone,
    CustomerNotification,
    CustomerNotificationSettings,
    NotificationTemplate,
)
from apps.partners.models import Partner
from apps.timeline.events import EventKind
from apps.timeline.models import Identity, Milestone, MilestoneReport, Order, Reference, Shipment, identity

if TYPE_CHECKING:
    from apps.outbound.services import Fact

MILESTONE_OF_KIND = {
    EventKind.SHIPMENT_TRACKING_ASSIGNED.value: CustomerMilestone.SHIPPED,
    EventKind.SHIPMENT_DELAYED.value: CustomerMilestone.DELAYED,
    EventKind.SHIPMENT_OUT_FOR_DELIVERY.value: CustomerMilestone.OUT_FOR_DELIVERY,
    EventKind.SHIPMENT_DELIVERED.value: CustomerMilestone.DELIVERED,
    EventKind.INVOICE_GENERATED.value: CustomerMilestone.INVOICE_ISSUED,
}
KINDS_OF_MILESTONE = {
    CustomerMilestone.SHIPPED: [EventKind.SHIPMENT_TRACKING_ASSIGNED.value, EventKind.SHIPMENT_MANIFESTED.value],
    **{milestone: [kind] for kind, milestone in MILESTONE_OF_KIND.items() if milestone != CustomerMilestone.SHIPPED},
}

# Retries wait 1, 5 and then 30 minutes; the attempt after the last delay is the final one.
RETRY_DELAYS = (timedelta(minutes=1), timedelta(minutes=5), timedelta(minutes=30))
MAX_ATTEMPTS = len(RETRY_DELAYS) + 1
# A sender that has not finished by then is presumed dead, and the notification is sent again.
CLAIM_HOLD = timedelta(minutes=5)
SUBJECT_MAX_LENGTH = 250
RECIPIENT_SEPARATORS = re.compile(r"[\s,;]+")
UNKNOWN_TAG = re.compile(r"Invalid block tag on line (\d+): '([^']+)'")
# At edit time a variable the context does not have renders as this mark, so it can be named.
UNKNOWN_VARIABLE = "\x00unknown:%s\x00"
UNKNOWN_VARIABLE_MARK = re.compile("\x00unknown:([^\x00]*)\x00")

CONTEXT_VARIABLES = {
    "customer_name": "The customer's name",
    "order_number": "The order number",
    "po_number": "The customer's purchase order number, if known",
    "milestone": 'What happened, e.g. "Delivered"',
    "occurred_at": "When it happened, in the customer's time zone",
    "shipment_number": "The shipment number",
    "tracking_number": "The carrier's tracking number",
    "carrier": "The carrier's name",
    "estimated_delivery": "The carrier's latest delivery estimate, in the customer's time zone",
    "predicted_delivery": "Our predicted delivery (from past deliveries on the lane), in the customer's time zone",
    "predicted_window": "The window 80 % of like deliveries fell in: from – to, in the customer's time zone",
    "promised_date": "The date the order was promised for",
    "delay_reason": "Why the shipment is delayed, if the carrier said",
    "invoice_number": "The invoice number (invoice issued)",
    "invoice_amount": 'The invoice amount, e.g. "1,234.50" (invoice issued)',
    "currency": "The currency of the invoice or order",
    "tracking_url": "A link to the order's public tracking page",
}


# --- creating (inside the apply transaction) ----------------------------------------------------


def notification_settings() -> dict[int, CustomerNotificationSettings]:
    """Active settings by customer id (few rows: read once per apply)."""
    rows = CustomerNotificationSettings.objects.filter(active=True).exclude(milestones=[])
    return {row.customer_id: row for row in rows}


def milestone_of(fact: "Fact") -> str | None:
    """The customer milestone a fact reaches, if any: a manifest counts as shipped once it has tracking."""
    kind = fact.milestone.kind
    if kind == EventKind.SHIPMENT_MANIFESTED and fact.shipment and fact.shipment.tracking_number:
        return CustomerMilestone.SHIPPED
    return MILESTONE_OF_KIND.get(kind)


def customer_notifications_create(
    *, facts: Sequence["Fact"], settings_by_customer: dict[int, CustomerNotificationSettings]
) -> None:
    """Inside the apply transaction: a pending notification per customer milestone reached."""
    rows = []
    for fact in facts:
        milestone = milestone_of(fact)
        if milestone is None:
            continue
        for order in fact.orders:
            wanted = settings_by_customer.get(order.customer_id)
            if wanted and milestone in wanted.milestones:
                rows.append(
                    CustomerNotification(
                        customer_id=order.customer_id,
                        order_id=order.id,
                        shipment_id=fact.shipment.id if fact.shipment else None,
                        milestone=milestone,
                        event_id=fact.milestone.event_id,
                        source_partner_id=fact.milestone.source_partner_id,
                    )
                )
    if not rows:
        return
    CustomerNotification.objects.bulk_create(rows, ignore_conflicts=True)
    transaction.on_commit(_send_pending)


def _send_pending() -> None:
    from apps.outbound.tasks import notifications_send_task

    notifications_send_task.apply_async(queue="outbound")


# --- templates ----------------------------------------------------------------------------------

# Tags that could read files, other templates, settings or internals are left out.
SAFE_TAGS = (
    "autoescape",
    "comment",
    "cycle",
    "filter",
    "firstof",
    "for",
    "if",
    "ifchanged",
    "now",
    "regroup",
    "resetcycle",
    "spaceless",
    "templatetag",
    "verbatim",
    "widthratio",
    "with",
)


def _safe_library() -> Library:
    library = Library()
    library.tags = {name: defaulttags.register.tags[name] for name in SAFE_TAGS}
    library.filters = dict(defaultfilters.register.filters)
    return library


class PlainTextEngine(Engine):
    """A template engine for customer e-mails: no loaders, no libraries, a vetted set of tags."""

    default_builtins: list[str] = []

    def __init__(self, *, string_if_invalid: str = "") -> None:
        super().__init__(loaders=[], libraries={}, autoescape=False, string_if_invalid=string_if_invalid)

    def get_template_builtins(self, builtins: list[str]) -> list[Library]:
        return [_safe_library()]


ENGINE = PlainTextEngine()
CHECKING_ENGINE = PlainTextEngine(string_if_invalid=UNKNOWN_VARIABLE)

MAX_TEMPLATE_LENGTH = 20_000
MAX_RENDERED = 100_000
RENDER_SECONDS = 2.0
MAX_WIDTH = 200
# Filters whose output grows with their argument: it must be written in the template, and small.
WIDTH_FILTERS = frozenset({"center", "floatformat", "join", "ljust", "rjust", "stringformat"})
_NUMBER = re.compile(r"\d+")


class TemplateError(Exception):
    """A notification template that does not compile or render; the message says why."""


def _compile(source: str, engine: Engine) -> Template:
    """The template, checked: its length, and every argument of a filter in WIDTH_FILTERS."""
    if len(source) > MAX_TEMPLATE_LENGTH:
        raise TemplateError(f"the template is {len(source):,} characters long; the limit is {MAX_TEMPLATE_LENGTH:,}")
    template = engine.from_string(source)
    for expression in _filter_expressions(template.nodelist):
        for function, arguments in expression.filters:
            name = getattr(function, "_filter_name", function.__name__)
            if name in WIDTH_FILTERS:
                for looked_up, argument in arguments:
                    _check_width(name, argument if not looked_up else argument.literal, argument, expression.token)
    return template


def _check_width(name: str, literal: object, argument: object, token: str) -> None:
    """A bare number is a Variable with a literal value; a name to look up is refused."""
    written = token if len(token) <= 60 else token[:57] + "..."
    if literal is None or isinstance(argument, Variable) and argument.lookups is not None:
        raise TemplateError(f"{{{{ {written} }}}}: the argument of |{name} must be written in the template")
    text = str(literal)
    too_large = len(text) > MAX_WIDTH if name == "join" else any(int(n) > MAX_WIDTH for n in _NUMBER.findall(text))
    if too_large:
        raise TemplateError(f"{{{{ {written} }}}}: the argument of |{name} is too large (at most {MAX_WIDTH})")


def _filter_expressions(root: object) -> Iterator[FilterExpression]:
    """Every filter expression in a compiled template: in variables, tag arguments and conditions."""
    seen: set[int] = set()
    stack = [root]
    while stack:
        item = stack.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, FilterExpression):
            yield item
        elif isinstance(item, list | tuple):
            stack.extend(item)
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif type(item).__module__.startswith("django.template") and hasattr(item, "__dict__"):
            stack.extend(vars(item).values())


class _Bounds:
    """One render's allowance: characters of output (counted at the nodes that write text, so a
    loop's body counts on every turn) and a deadline, checked as each node renders."""

    def __init__(self) -> None:
        self.left = MAX_RENDERED
        self.deadline = time.monotonic() + RENDER_SECONDS

    def watch(self, template: Template) -> None:
        for node in template.nodelist.get_nodes_by_type(Node):
            writes = not any(getattr(node, name, None) for name in node.child_nodelists)
            node.render_annotated = self._watched(node.render_annotated, writes=writes)

    def _watched(self, render: Callable[[Context], str], *, writes: bool) -> Callable[[Context], str]:
        def render_annotated(context: Context) -> str:
            if time.monotonic() > self.deadline:
                raise TemplateError(f"rendering took more than {RENDER_SECONDS:g} seconds and was stopped")
            output = render(context)
            if writes:
                self.left -= len(output)
                if self.left < 0:
                    raise TemplateError(f"the template renders more than {MAX_RENDERED:,} characters")
            return output

        return render_annotated


class _CheckingContext(Context):
    """The sample context, noting each name a template looks up that it does not have (in
    ``{{ … }}``, ``{% if … %}``, ``{% for … in … %}`` alike)."""

    def __init__(self) -> None:
        super().__init__(sample_context(), autoescape=False)
        self._unknown: set[str] = set()  # a leading underscore: templates cannot reach it

    def __getitem__(self, key: str) -> Any:
        try:
            return super().__getitem__(key)
        except KeyError:
            self._unknown.add(key)
            raise


def template_error(source: str) -> str | None:
    """Why ``source`` is not a usable template, or None. Used by forms, at edit time: a misspelt
    variable would otherwise send every customer an e-mail with a blank in it."""
    context = _CheckingContext()
    try:
        rendered = _render(source, context, engine=CHECKING_ENGINE)
    except TemplateError as exc:
        return str(exc)
    # Names the context lacks, and, from the marks, lookups into known ones (customer_name.nope).
    nested = (name for name in UNKNOWN_VARIABLE_MARK.findall(rendered) if name.split(".")[0] not in context._unknown)
    unknown = sorted(context._unknown.union(nested))
    if unknown:
        names = ", ".join(f"{{{{ {name} }}}}" for name in unknown)
        return f"unknown variable{'s' if len(unknown) > 1 else ''} {names}: use the variables listed below"
    return None


def render_notification(template: NotificationTemplate, context: dict[str, str]) -> tuple[str, str]:
    """Subject (one line, at most 250 characters) and body; raises ``TemplateError``."""
    subject = " ".join(_render(template.subject, context).split())[:SUBJECT_MAX_LENGTH]
    return subject, _render(template.body, context).strip() + "\n"


def _render(source: str, context: dict[str, str] | Context, engine: Engine = ENGINE) -> str:
    if not isinstance(context, Context):
        context = Context(context, autoescape=False)
    try:
        template = _compile(source, engine)
        _Bounds().watch(template)
        return template.render(context)
    except TemplateError:
        raise
    except TemplateSyntaxError as exc:
        unknown = UNKNOWN_TAG.search(str(exc))
        if unknown:
            line, tag = unknown.groups()
            allowed = ", ".join(sorted(SAFE_TAGS))
            raise TemplateError(f"line {line}: the tag {{% {tag} %}} is not available here (use {allowed})") from exc
        raise TemplateError(f"template syntax error: {exc}") from exc
    except Exception as exc:  # a filter given a bad argument, say: never crash the sender
        raise TemplateError(f"the template could not be rendered: {exc or type(exc).__name__}") from exc


def template_for(
    templates: dict[tuple[int | None, str], NotificationTemplate], customer_id: int, milestone: str
) -> NotificationTemplate | None:
    """The customer's own template for the milestone, else the default one."""
    return templates.get((customer_id, milestone)) or templates.get((None, milestone))


def _templates(customer_ids: set[int]) -> dict[tuple[int | None, str], NotificationTemplate]:
    rows = NotificationTemplate.objects.filter(Q(customer_id__in=customer_ids) | Q(customer__isnull=True))
    return {(row.customer_id, row.milestone): row for row in rows}


# --- the context: plain strings only ------------------------------------------------------------


def sample_context() -> dict[str, str]:
    """A clearly made-up context, for validating templates and previews without an order."""
    return {
        "customer_name": "Example Customer Ltd",
        "order_number": "SO-SAMPLE-0001",
        "po_number": "PO-SAMPLE-77",
        "milestone": CustomerMilestone.DELIVERED.label,
        "occurred_at": "25 Nov 2026 14:03 CET",
        "shipment_number": "SH-SAMPLE-0001",
        "tracking_number": "1ZSAMPLE0000000001",
        "carrier": "Example Parcel Service",
        "estimated_delivery": "26 Nov 2026 12:00 CET",
        "predicted_delivery": "26 Nov 2026 15:00 CET",
        "predicted_window": "26 Nov 2026 09:00 CET – 27 Nov 2026 17:00 CET",
        "promised_date": "27 Nov 2026",
        "delay_reason": "Weather",
        "invoice_number": "INV-SAMPLE-0001",
        "invoice_amount": "1,234.50",
        "currency": "EUR",
        "tracking_url": f"{settings.PUBLIC_BASE_URL}/track/sample-link/",
    }


def notification_context(
    *,
    customer: Partner,
    order: Order,
    milestone: str,
    shipment: Shipment | None,
    event: Milestone | None,
    po_number: str,
    tracking_url: str,
    occurred_at: datetime,
) -> dict[str, str]:
    """Every variable of ``CONTEXT_VARIABLES`` as a string ("" when unknown), times in the customer's zone."""
    zone = _zone(customer.time_zone)
    attributes = (event.payload or {}).get("attributes") if event else None
    reason = str(attributes.get("reason") or "") if isinstance(attributes, dict) else ""
    estimate = (shipment.estimated_delivery_at if shipment else None) or (
        event.estimated_delivery_at if event else None
    )
    is_invoice = event is not None and event.kind == EventKind.INVOICE_GENERATED
    prediction = getattr(shipment, "prediction", None) if shipment else None  # none once delivered
    p10, p50, p90 = (prediction.p10, prediction.p50, prediction.p90) if prediction else (None, None, None)
    return {
        "customer_name": customer.name,
        "order_number": order.number,
        "po_number": po_number,
        "milestone": CustomerMilestone(milestone).label,
        "occurred_at": _when(occurred_at, zone),
        "shipment_number": shipment.number if shipment else "",
        "tracking_number": shipment.tracking_number if shipment else "",
        "carrier": shipment.carrier.name if shipment and shipment.carrier else "",
        "estimated_delivery": _when(estimate, zone),
        "predicted_delivery": _when(p50, zone),
        "predicted_window": f"{_when(p10, zone)} – {_when(p90, zone)}" if p10 and p90 else "",
        "promised_date": order.promised_at.astimezone(zone).strftime("%d %b %Y") if order.promised_at else "",
        "delay_reason": reason or (shipment.delay_reason if shipment else ""),
        "invoice_number": _reference(event, "invoice") if is_invoice else "",
        "invoice_amount": _amount(event.amount) if is_invoice and event else "",
        "currency": (event.currency if is_invoice and event else "") or order.currency,
        "tracking_url": tracking_url,
    }


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def _when(value: datetime | None, zone: ZoneInfo) -> str:
    return value.astimezone(zone).strftime("%d %b %Y %H:%M %Z") if value else ""


def _amount(value: Decimal | None) -> str:
    return f"{value:,.2f}" if value is not None else ""


def _reference(event: Milestone | None, kind: str) -> str:
    refs = event.references if event else []
    return next((ref.get("value", "") for ref in refs if isinstance(ref, dict) and ref.get("kind") == kind), "")


def _uses_tracking_url(template: NotificationTemplate) -> bool:
    return "tracking_url" in template.subject or "tracking_url" in template.body


# --- previews (admin) ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Preview:
    subject: str
    body: str
    error: str
    source: str  # where the values come from: the customer's most recent order, or a sample


def notification_preview(*, customer: Partner | None, milestone: str, subject: str, body: str) -> Preview:
    """Render a (possibly unsaved) template over the customer's most recent order, else a sample.

    Writes nothing: the tracking URL is an existing active link of that order, or a sample one.
    """
    context, source = _preview_context(customer, milestone)
    template = NotificationTemplate(customer=customer, milestone=milestone, subject=subject, body=body)
    try:
        rendered_subject, rendered_body = render_notification(template, context)
    except TemplateError as exc:
        return Preview(subject="", body="", error=str(exc), source=source)
    return Preview(subject=rendered_subject, body=rendered_body, error="", source=source)


def _preview_context(customer: Partner | None, milestone: str) -> tuple[dict[str, str], str]:
    from apps.outbound.tracking import tracking_url

    sample = sample_context() | {"milestone": CustomerMilestone(milestone).label}
    order = (
        Order.objects.filter(customer=customer).order_by(F("ordered_at").desc(nulls_last=True), "-id").first()
        if customer
        else None
    )
    if order is None or customer is None:
        if customer is not None:
            sample["customer_name"] = customer.name
        return sample, "a sample order (made-up values)"
    shipment = (
        order.shipments.select_related("carrier", "prediction")
        .order_by(F("manifested_at").desc(nulls_last=True), "-id")
        .first()
    )
    subjects = Q(order=order) | Q(shipment=shipment) if shipment else Q(order=order)
    event = Milestone.objects.filter(subjects, kind__in=KINDS_OF_MILESTONE[milestone]).order_by("-occurred_at").first()
    link = (
        order.tracking_links.filter(revoked_at__isnull=True, expires_at__gt=timezone.now())
        .order_by("-created_at")
        .first()
    )
    po = order.references.filter(kind="po").order_by("value").values_list("value", flat=True).first()
    context = notification_context(
        customer=customer,
        order=order,
        milestone=milestone,
        shipment=shipment,
        event=event,
        po_number=po or "",
        tracking_url=tracking_url(link) if link else sample["tracking_url"],
        occurred_at=event.occurred_at if event else timezone.now(),
    )
    return context, f"order {order.number}, the customer's most recent"


# --- sending ------------------------------------------------------------------------------------


def parse_recipients(text: str) -> tuple[list[str], list[str]]:
    """(valid addresses, invalid entries) from addresses separated by commas, semicolons or new lines."""
    valid: list[str] = []
    invalid: list[str] = []
    for entry in dict.fromkeys(part for part in RECIPIENT_SEPARATORS.split(text or "") if part):
        try:
            validate_email(entry)
        except ValidationError:
            invalid.append(entry)
        else:
            valid.append(entry)
    return valid, invalid


@dataclass
class _Batch:
    """What the claimed notifications need, read once: settings, templates, events, PO numbers."""

    settings: dict[int, CustomerNotificationSettings]
    templates: dict[tuple[int | None, str], NotificationTemplate]
    events: dict[Identity, Milestone]
    po_numbers: dict[int, str]

    @classmethod
    def load(cls, rows: list[CustomerNotification]) -> "_Batch":
        customer_ids = {row.customer_id for row in rows}
        order_ids = {row.order_id for row in rows}
        po_numbers: dict[int, str] = {}
        for order_id, value in (
            Reference.objects.filter(order_id__in=order_ids, kind="po")
            .order_by("value")
            .values_list("order_id", "value")
        ):
            po_numbers.setdefault(order_id, value)
        return cls(
            settings={
                s.customer_id: s for s in CustomerNotificationSettings.objects.filter(customer_id__in=customer_ids)
            },
            templates=_templates(customer_ids),
            events=_events({identity(row) for row in rows}),
            po_numbers=po_numbers,
        )


def _events(wanted: set[Identity]) -> dict[Identity, Milestone]:
    """Milestones by event identity; an event that became another source's report maps to that milestone."""
    milestones = Milestone.objects.filter(event_id__in={key.event_id for key in wanted})
    found = {identity(m): m for m in milestones if identity(m) in wanted}
    missing = wanted - set(found)
    if missing:
        reports = MilestoneReport.objects.filter(event_id__in={key.event_id for key in missing})
        for report in reports.select_related("milestone"):
            if identity(report) in missing:
                found[identity(report)] = report.milestone
    return found


@dataclass
class _Result:
    status: str
    error: str = ""
    recipients: str = ""
    subject: str = ""
    body: str = ""
    retry_at: datetime | None = None


def notifications_send(*, limit: int = 500, now: datetime | None = None) -> int:
    """Send the notifications that are due (at most ``limit``); returns how many were sent.

    Safe to run in several workers at once: each notification is claimed by a conditional update
    before it is rendered and sent. Failed SMTP attempts are due again after a growing delay; the
    periodic outbound sweep sends them then.
    """
    now = now or timezone.now()
    _recover_abandoned(now)
    due = (
        CustomerNotification.objects.filter(status=CustomerNotification.Status.PENDING)
        .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
        .order_by("created_at", "id")
        .values_list("pk", flat=True)[:limit]
    )
    claimed = [pk for pk in due if _claim(pk, now)]
    if not claimed:
        return 0
    rows = list(
        CustomerNotification.objects.filter(pk__in=claimed)
        .select_related("customer", "order", "shipment__carrier", "shipment__prediction")
        .order_by("created_at", "id")
    )
    batch = _Batch.load(rows)
    connection = get_connection()
    try:
        for row in rows:
            _record(row, _send_one(row, batch, connection, now))
    finally:
        connection.close()
    return sum(1 for row in rows if row.status == CustomerNotification.Status.SENT)


def _recover_abandoned(now: datetime) -> None:
    """Claims whose sender died: send again, unless that was the last attempt."""
    stale = CustomerNotification.objects.filter(status=CustomerNotification.Status.SENDING, claimed_until__lt=now)
    note = "the sender stopped before it finished"
    stale.filter(attempts__lt=MAX_ATTEMPTS).update(
        status=CustomerNotification.Status.PENDING,
        claimed_until=None,
        next_attempt_at=now,
        error=f"{note}; sending again",
    )
    stale.update(status=CustomerNotification.Status.FAILED, claimed_until=None, error=f"gave up: {note}")


def _claim(pk: int, now: datetime) -> bool:
    return bool(
        CustomerNotification.objects.filter(
            pk=pk, status=CustomerNotification.Status.PENDING, attempts__lt=MAX_ATTEMPTS
        )
        .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
        .update(status=CustomerNotification.Status.SENDING, claimed_until=now + CLAIM_HOLD, attempts=F("attempts") + 1)
    )


def _send_one(row: CustomerNotification, batch: _Batch, connection: BaseEmailBackend, now: datetime) -> _Result:
    wanted = batch.settings.get(row.customer_id)
    if wanted is None or not wanted.active or row.milestone not in wanted.milestones:
        return _Result(CustomerNotification.Status.SKIPPED, "the customer turned this e-mail off before it was sent")
    recipients, invalid = parse_recipients(wanted.recipients)
    skipped = f"skipped invalid addresses: {', '.join(invalid)}" if invalid else ""
    if not recipients:
        return _Result(CustomerNotification.Status.FAILED, f"no valid recipient address; {skipped or 'none given'}")
    template = template_for(batch.templates, row.customer_id, row.milestone)
    if template is None:
        label = CustomerMilestone(row.milestone).label
        return _Result(CustomerNotification.Status.FAILED, f'no template for "{label}": add a default one in admin')
    try:
        subject, body = render_notification(template, _context(row, batch, template, now))
    except TemplateError as exc:
        return _Result(CustomerNotification.Status.FAILED, f"{template}: {exc}")
    message = EmailMessage(subject, body, settings.DEFAULT_FROM_EMAIL, recipients, connection=connection)
    try:
        message.send()
    except (OSError, ValueError) as exc:  # smtplib.SMTPException is an OSError
        connection.close()  # a broken connection is reopened for the next message
        return _failed_attempt(row, exc, now)
    return _Result(CustomerNotification.Status.SENT, skipped, ", ".join(recipients), subject, body)


def _context(row: CustomerNotification, batch: _Batch, template: NotificationTemplate, now: datetime) -> dict[str, str]:
    from apps.outbound.tracking import tracking_link_for_order, tracking_url

    event = batch.events.get(identity(row))
    url = tracking_url(tracking_link_for_order(order_id=row.order_id, now=now)) if _uses_tracking_url(template) else ""
    return notification_context(
        customer=row.customer,
        order=row.order,
        milestone=row.milestone,
        shipment=row.shipment,
        event=event,
        po_number=batch.po_numbers.get(row.order_id, ""),
        tracking_url=url,
        occurred_at=event.occurred_at if event else row.created_at,
    )


def _failed_attempt(row: CustomerNotification, exc: Exception, now: datetime) -> _Result:
    reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    if row.attempts >= MAX_ATTEMPTS:
        return _Result(CustomerNotification.Status.FAILED, f"gave up after {row.attempts} attempts: {reason}")
    retry_at = now + RETRY_DELAYS[row.attempts - 1]
    when = retry_at.astimezone(UTC)
    error = f"attempt {row.attempts} of {MAX_ATTEMPTS} failed: {reason}; trying again at {when:%H:%M} UTC"
    return _Result(CustomerNotification.Status.PENDING, error, retry_at=retry_at)


def _record(row: CustomerNotification, result: _Result) -> None:
    fields: dict[str, Any] = {"status": result.status, "error": result.error[:2000], "claimed_until": None}
    if result.status == CustomerNotification.Status.SENT:
        fields |= {"recipients": result.recipients, "subject": result.subject, "body": result.body}
        fields |= {"sent_at": timezone.now(), "next_attempt_at": None}
    elif result.retry_at is not None:
        fields["next_attempt_at"] = result.retry_at
    CustomerNotification.objects.filter(pk=row.pk, status=CustomerNotification.Status.SENDING).update(**fields)
    for name, value in fields.items():
        setattr(row, name, value)


def notifications_resend(*, notification_ids: Sequence[int]) -> int:
    """Send failed or skipped notifications again from a fresh set of attempts (after a fix)."""
    with transaction.atomic():
        count = CustomerNotification.objects.filter(
            pk__in=list(notification_ids),
            status__in=[CustomerNotification.Status.FAILED, CustomerNotification.Status.SKIPPED],
        ).update(status=CustomerNotification.Status.PENDING, attempts=0, next_attempt_at=None, error="")
        if count:
            transaction.on_commit(_send_pending)
    return count

"""Opening, closing and working exception cases.

``detect`` is idempotent: at most one open case per (rule, subject) — the database enforces it —
and a case whose condition has cleared closes itself with resolution "auto".
"""

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import PermissionDenied
from django.db import connection, transaction
from django.db.models import Exists, OuterRef, Q, QuerySet, Subquery, TextChoices
from django.utils import timezone

from apps.dashboards.services import kpis_refresh_later
from apps.exceptions.models import CaseEvent, ExceptionCase, ExceptionRule, SubjectType
from apps.exceptions.realtime import broadcast_cases_changed_on_commit
from apps.exceptions.rules import DETECTORS, SUMMARY_LENGTH, Detector, Hit, Scope
from apps.predictions.models import OrderRisk
from apps.timeline.bulk import row_sources
from apps.timeline.projections import shipments_of_orders

OPEN = ExceptionCase.OPEN_STATUSES
WRITE_BATCH = 1000  # cases a statement inserts
CLOSED_BY_PEOPLE = (ExceptionCase.Status.RESOLVED, ExceptionCase.Status.DISMISSED)


class ReasonCode(TextChoices):
    FIXED_AT_SOURCE = "fixed_at_source", "Fixed at the source"
    CUSTOMER_INFORMED = "customer_informed", "Customer informed"
    CARRIER_CLAIM = "carrier_claim", "Claim opened with the carrier"
    INVOICED_MANUALLY = "invoiced_manually", "Invoiced manually"
    NOT_AN_ISSUE = "not_an_issue", "Not an issue"
    DUPLICATE = "duplicate", "Duplicate"
    OTHER = "other", "Other (see note)"


class CaseAction(TextChoices):
    ASSIGN_TO_ME = "assign_to_me", "Assign to me"
    ACKNOWLEDGE = "acknowledge", "Acknowledge"
    COMMENT = "comment", "Comment"
    RESOLVE = "resolve", "Resolve"
    DISMISS = "dismiss", "Dismiss"
    RELEASE_HOLD = "release_hold", "Release the invoice hold"
    TRIGGER_INVOICE = "trigger_invoice", "Invoice now"


# Money moves only for people allowed to move it (the Finance role).
ACTION_PERMISSIONS = {
    CaseAction.RELEASE_HOLD: "billing.release_invoice",
    CaseAction.TRIGGER_INVOICE: "billing.trigger_invoice",
}


class CaseActionError(ValueError):
    """An action that does not apply to this case (already closed, missing reason)."""


@dataclass
class DetectionReport:
    opened: list[int] = field(default_factory=list)
    closed: list[int] = field(default_factory=list)


def builtin_rules_ensure(model: type[ExceptionRule] = ExceptionRule) -> int:
    """Create the built-in rules that do not exist yet, with their default settings.

    ``model`` lets the data migration pass its historical model.
    """
    existing = set(model.objects.values_list("code", flat=True))
    missing = [
        model(
            code=d.code,
            title=d.title,
            queue=d.queue,
            severity=d.severity,
            threshold=d.threshold,
            sla=d.sla,
            tolerance=d.tolerance,
        )
        for d in DETECTORS.values()
        if d.code not in existing
    ]
    model.objects.bulk_create(missing, ignore_conflicts=True)
    return len(missing)


def detect(*, order_ids: Iterable[int] | None = None, now: datetime | None = None) -> DetectionReport:
    """Evaluate every enabled rule, over everything (sweep) or over the orders an apply touched."""
    now = now or timezone.now()
    report = DetectionReport()
    rules = list(ExceptionRule.objects.filter(enabled=True, code__in=DETECTORS))
    scope = None
    if order_ids is not None:
        rules = [rule for rule in rules if DETECTORS[rule.code].order_scoped]
        touched = set(order_ids)
        scope = Scope(order_ids=touched, shipment_ids=shipments_of_orders(touched))
    if scope is None:
        for rule in rules:  # the sweep: one transaction per rule, none held for the whole run
            with transaction.atomic():
                _detect_rule(rule, None, None, now, report)
    elif rules:
        with transaction.atomic():  # after an apply: one commit for every rule, not one each
            cases = _cases_in_scope(scope)
            for rule in rules:
                _detect_rule(rule, scope, cases.get(rule.id, []), now, report)
    case_risks_refresh(order_ids=scope.order_ids if scope else None)
    kpis_refresh_later(case_ids=report.closed)
    changed = report.opened + report.closed
    if changed:
        broadcast_cases_changed_on_commit(ExceptionCase.objects.filter(id__any=changed).values_list("queue", flat=True))
        transaction.on_commit(lambda: _notify_critical(report.opened))
    return report


def case_risks_refresh(*, order_ids: set[int] | None = None) -> int:
    """Copy each open case's order risk (``OrderRisk``) onto the case, for the queues to sort and
    filter on it through an index: one UPDATE of the cases whose risk changed (of ``order_ids``'
    cases, or of every open case on the sweep). Returns how many changed."""
    risk = OrderRisk.objects.filter(order_id=OuterRef("order_id"))
    cases = ExceptionCase.objects.filter(status__in=OPEN, order__isnull=False)
    if order_ids is not None:
        cases = cases.filter(order_id__any=order_ids)
    unchanged = Exists(risk.filter(late_probability=OuterRef("late_probability"))) | Q(
        late_probability__isnull=True, order__risk__isnull=True
    )
    return cases.exclude(unchanged).update(late_probability=Subquery(risk.values("late_probability")[:1]))


def _detect_rule(
    rule: ExceptionRule,
    scope: Scope | None,
    cases: "list[_ScopedCase] | None",
    now: datetime,
    report: DetectionReport,
) -> None:
    detector = DETECTORS[rule.code]
    hits = {hit.subject_id: hit for hit in detector.find(rule, now, scope)}
    if cases is None:
        report.opened += _open(rule, detector, hits, now, _handled_subjects(rule, detector, hits))
        report.closed += _close_cleared(rule, hits, now)
    else:
        report.opened += _open(rule, detector, hits, now, _handled_in_scope(cases, detector))
        report.closed += _close_cleared_in_scope(cases, hits, now)


def _notify_critical(case_ids: list[int]) -> None:
    from apps.exceptions.tasks import critical_cases_notify_task

    if case_ids:
        critical_cases_notify_task.apply_async(args=[case_ids], queue="default")


def _handled_subjects(rule: ExceptionRule, detector: Detector, hits: dict[int, Hit]) -> set[int]:
    """The hits' subjects that already have a case: an open one, or one a person closed while the
    condition still holds (it holds back a new case until the condition clears)."""
    handled = Q(status__in=OPEN)
    if detector.hold_after_manual_close:
        handled |= Q(status__in=CLOSED_BY_PEOPLE, condition_cleared_at__isnull=True) & ~Q(resolution="auto")
    return set(
        ExceptionCase.objects.filter(
            handled, rule=rule, subject_type=detector.subject_type, subject_id__any=hits
        ).values_list("subject_id", flat=True)
    )


def _handled_in_scope(cases: "list[_ScopedCase]", detector: Detector) -> set[int]:
    """``_handled_subjects`` read from the cases already loaded for the touched orders: every hit
    after an apply is about a touched order or one of its shipments, whose cases those are."""
    return {
        case.subject_id
        for case in cases
        if case.status in OPEN or (detector.hold_after_manual_close and case.resolution != "auto")
    }


def _open(rule: ExceptionRule, detector: Detector, hits: dict[int, Hit], now: datetime, handled: set[int]) -> list[int]:
    """Open a case per hit whose subject has none (``handled``), with its "opened" event."""
    new = [hit for subject_id, hit in hits.items() if subject_id not in handled]
    if not new:
        return []
    opened = _insert_cases(rule, detector, new, now)
    _record(opened, now, CaseEvent.Action.OPENED)
    return opened


def _insert_cases(rule: ExceptionRule, detector: Detector, hits: list[Hit], now: datetime) -> list[int]:
    """Insert a case per hit and return the ids of those inserted: one ``INSERT ... ON CONFLICT DO
    NOTHING RETURNING id`` per ``WRITE_BATCH`` hits, its rows one JSON parameter on PostgreSQL, no
    model instance built. A subject whose open case a concurrent run opened first is skipped:
    still one open case per rule and subject."""
    common = {
        "rule_id": rule.id,
        "queue": rule.queue,
        "severity": rule.severity,
        "subject_type": detector.subject_type,
        "opened_at": now,
        "due_at": now + rule.sla,
    }
    rows = [
        {
            **common,
            "subject_id": hit.subject_id,
            "order_id": hit.order_id,
            "shipment_id": hit.shipment_id,
            "partner_id": hit.partner_id,
            "customer_id": hit.customer_id,
            "region": hit.region or "",
            "summary": hit.summary[:SUMMARY_LENGTH],
            "amount_at_risk": hit.amount,
            "currency": hit.currency or "",
        }
        for hit in hits
    ]
    fields = [field for field in ExceptionCase._meta.concrete_fields if not field.primary_key]
    values = [[row[f.attname] if f.attname in row else f.get_default() for f in fields] for row in rows]
    quote = connection.ops.quote_name
    table, names = quote(ExceptionCase._meta.db_table), ", ".join(quote(field.column) for field in fields)
    opened: list[int] = []
    with connection.cursor() as cursor:
        for source, params in row_sources(ExceptionCase, [f.attname for f in fields], values, chunk=WRITE_BATCH):
            # Only the model's quoted table and column names are in the SQL; every value is a parameter.
            sql = f"INSERT INTO {table} ({names}) {source} ON CONFLICT DO NOTHING RETURNING {quote('id')}"  # noqa: S608
            cursor.execute(sql, params)
            opened += [pk for (pk,) in cursor.fetchall()]
    return opened


def _record(case_ids: list[int], now: datetime, action: str, note: str = "") -> None:
    """One event per case, written by the database from the cases' ids: one ``INSERT ... SELECT``."""
    if not case_ids:
        return
    cases, cases_params = ExceptionCase.objects.filter(id__any=case_ids).values("id").order_by().query.sql_with_params()
    quote = connection.ops.quote_name
    at = CaseEvent._meta.get_field("at").get_db_prep_save(now, connection)
    columns = ", ".join(quote(name) for name in ("case_id", "at", "actor_id", "action", "reason_code", "note"))
    # Only the model's quoted table and column names are in the SQL; every value is a parameter.
    sql = (
        f"INSERT INTO {quote(CaseEvent._meta.db_table)} ({columns}) SELECT id, %s, NULL, %s, '', %s FROM ({cases}) AS c"  # noqa: S608
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [at, action, note, *cases_params])


def _close_cleared(rule: ExceptionRule, hits: dict[int, Hit], now: datetime) -> list[int]:
    """The sweep: every case of the rule whose subject is no longer a hit."""
    ExceptionCase.objects.filter(rule=rule, status__in=CLOSED_BY_PEOPLE, condition_cleared_at__isnull=True).exclude(
        subject_id__any=hits
    ).exclude(resolution="auto").update(condition_cleared_at=now)
    cleared = list(
        ExceptionCase.objects.filter(rule=rule, status__in=OPEN)
        .exclude(subject_id__any=hits)
        .values_list("id", flat=True)
    )
    return _resolve_automatically(cleared, now)


class _ScopedCase(NamedTuple):
    id: int
    subject_id: int
    status: str
    resolution: str


def _cases_in_scope(scope: Scope) -> dict[int, list[_ScopedCase]]:
    """The cases about the touched orders and their shipments, by rule: one query for every rule.

    Filtering on the two subject columns (each indexed) rather than joining through the
    shipment's orders lets the database read only these cases, however many others are open.
    One query for each column, joined by ``UNION``: given either of two long lists, the planner
    read every case.
    """
    live = Q(status__in=OPEN) | Q(status__in=CLOSED_BY_PEOPLE, condition_cleared_at__isnull=True)
    columns = ("rule_id", "id", "subject_id", "status", "resolution")
    cases_of = ExceptionCase.objects.filter(live).order_by()
    about_orders = cases_of.filter(order_id__each=scope.order_ids).values_list(*columns)
    rows = about_orders.union(cases_of.filter(shipment_id__each=scope.shipment_ids).values_list(*columns))
    cases: dict[int, list[_ScopedCase]] = defaultdict(list)
    for rule_id, *fields in rows:
        cases[rule_id].append(_ScopedCase(*fields))
    return cases


def _close_cleared_in_scope(cases: list[_ScopedCase], hits: dict[int, Hit], now: datetime) -> list[int]:
    """After an apply: only the touched subjects' cases whose subject is no longer a hit."""
    gone = [case for case in cases if case.subject_id not in hits]
    # Closed by a person and not cleared yet (``_cases_in_scope`` reads no cleared ones).
    handled = [case.id for case in gone if case.status in CLOSED_BY_PEOPLE and case.resolution != "auto"]
    if handled:
        ExceptionCase.objects.filter(id__any=handled, condition_cleared_at__isnull=True).update(
            condition_cleared_at=now
        )
    return _resolve_automatically([case.id for case in gone if case.status in OPEN], now)


def _resolve_automatically(case_ids: list[int], now: datetime) -> list[int]:
    """Resolve as "auto" those of ``case_ids`` still open, with their "auto_closed" event; returns
    their ids. One ``UPDATE ... RETURNING`` checks and closes them: a case a person closed
    meanwhile keeps the person's resolution."""
    if not case_ids:
        return []
    quote = connection.ops.quote_name
    cases, cases_params = ExceptionCase.objects.filter(id__any=case_ids).values("id").order_by().query.sql_with_params()
    resolved_at = ExceptionCase._meta.get_field("resolved_at").get_db_prep_save(now, connection)
    # Only the model's quoted table and column names are in the SQL; every value is a parameter.
    sql = (
        f"UPDATE {quote(ExceptionCase._meta.db_table)} SET status = %s, resolution = 'auto', resolved_at = %s "  # noqa: S608
        f"WHERE status IN ({', '.join(['%s'] * len(OPEN))}) AND id IN ({cases}) RETURNING {quote('id')}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [ExceptionCase.Status.RESOLVED, resolved_at, *OPEN, *cases_params])
        cleared = [pk for (pk,) in cursor.fetchall()]
    _record(cleared, now, CaseEvent.Action.AUTO_CLOSED, "The condition cleared.")
    return cleared


# --- people working cases ---------------------------------------------------------------------


def _open_cases(cases: QuerySet[ExceptionCase]) -> list[ExceptionCase]:
    return list(cases.select_for_update().filter(status__in=OPEN))


@transaction.atomic
def cases_assign(*, cases: QuerySet[ExceptionCase], assignee: AbstractBaseUser | None, actor: AbstractBaseUser) -> int:
    now = timezone.now()
    locked = _open_cases(cases)
    ExceptionCase.objects.filter(id__in=[c.id for c in locked]).update(assignee=assignee)
    note = f"to {assignee.get_username()}" if assignee else "unassigned"
    CaseEvent.objects.bulk_create(
        [CaseEvent(case=c, at=now, actor=actor, action=CaseEvent.Action.ASSIGNED, note=note) for c in locked]
    )
    return len(locked)


@transaction.atomic
def cases_comment(*, cases: QuerySet[ExceptionCase], actor: AbstractBaseUser, note: str) -> int:
    if not note.strip():
        raise CaseActionError("A comment needs some text.")
    now = timezone.now()
    rows = list(cases)
    CaseEvent.objects.bulk_create(
        [CaseEvent(case=c, at=now, actor=actor, action=CaseEvent.Action.COMMENTED, note=note.strip()) for c in rows]
    )
    return len(rows)


@transaction.atomic
def cases_close(
    *, cases: QuerySet[ExceptionCase], actor: AbstractBaseUser, dismiss: bool, reason_code: str, note: str = ""
) -> int:
    """Resolve (the problem was handled) or dismiss (there was none) open cases, with a reason."""
    if reason_code not in ReasonCode.values:
        raise CaseActionError(f"Choose a reason: {', '.join(ReasonCode.values)}.")
    now = timezone.now()
    locked = _open_cases(cases)
    status = ExceptionCase.Status.DISMISSED if dismiss else ExceptionCase.Status.RESOLVED
    action = CaseEvent.Action.DISMISSED if dismiss else CaseEvent.Action.RESOLVED
    ExceptionCase.objects.filter(id__in=[c.id for c in locked]).update(
        status=status, resolution=reason_code, resolution_note=note, resolved_at=now
    )
    CaseEvent.objects.bulk_create(
        [CaseEvent(case=c, at=now, actor=actor, action=action, reason_code=reason_code, note=note) for c in locked]
    )
    kpis_refresh_later(case_ids=[c.id for c in locked])
    return len(locked)


# --- acknowledging (added for the work queues) -------------------------------------------------


@transaction.atomic
def cases_acknowledge(*, cases: QuerySet[ExceptionCase], actor: AbstractBaseUser) -> int:
    """Mark open cases as seen and being worked; closed or already acknowledged ones are left alone."""
    now = timezone.now()
    locked = [c for c in _open_cases(cases) if c.status == ExceptionCase.Status.OPEN]
    ExceptionCase.objects.filter(id__in=[c.id for c in locked]).update(status=ExceptionCase.Status.ACKNOWLEDGED)
    CaseEvent.objects.bulk_create(
        [CaseEvent(case=c, at=now, actor=actor, action=CaseEvent.Action.ACKNOWLEDGED) for c in locked]
    )
    return len(locked)


# --- one entry point for every action, from the pages and the API -----------------------------


def cases_act(
    *, action: str, cases: QuerySet[ExceptionCase], actor: AbstractBaseUser, reason_code: str = "", note: str = ""
) -> int:
    """Do ``action`` on ``cases``; returns how many it changed.

    Raises ``PermissionDenied`` when the actor's role does not allow the action, and
    ``CaseActionError`` when the input does not fit it (no reason to close, no comment text).
    """
    permission = ACTION_PERMISSIONS.get(action)
    if permission and not actor.has_perm(permission):
        raise PermissionDenied(f"Only Finance may {CaseAction(action).label.lower()}.")
    if action == CaseAction.ASSIGN_TO_ME:
        return cases_assign(cases=cases, assignee=actor, actor=actor)
    if action == CaseAction.ACKNOWLEDGE:
        return cases_acknowledge(cases=cases, actor=actor)
    if action == CaseAction.COMMENT:
        return cases_comment(cases=cases, actor=actor, note=note)
    if action == CaseAction.RELEASE_HOLD:
        return _release_holds(cases, actor, note)
    if action == CaseAction.TRIGGER_INVOICE:
        return _trigger_invoices(cases, actor)
    return cases_close(
        cases=cases, actor=actor, dismiss=action == CaseAction.DISMISS, reason_code=reason_code, note=note
    )


@transaction.atomic
def _release_holds(cases: QuerySet[ExceptionCase], actor: AbstractBaseUser, note: str) -> int:
    from apps.billing.models import Invoice
    from apps.billing.services import invoice_release

    held = dict(cases.filter(status__in=OPEN, subject_type=SubjectType.INVOICE).values_list("pk", "subject_id"))
    invoices = list(Invoice.objects.filter(pk__in=held.values(), status=Invoice.Status.HELD).select_related("order"))
    for invoice in invoices:
        invoice_release(invoice=invoice, actor=actor, note=note)
    return _close_what_cleared({invoice.order_id for invoice in invoices}, set(held))


@transaction.atomic
def _trigger_invoices(cases: QuerySet[ExceptionCase], actor: AbstractBaseUser) -> int:
    from apps.billing.services import invoice_trigger
    from apps.timeline.models import Order

    waiting = dict(cases.filter(status__in=OPEN, order__isnull=False).values_list("pk", "order_id"))
    orders = list(Order.objects.filter(pk__in=waiting.values(), invoiced_at__isnull=True))
    for order in orders:
        invoice_trigger(order=order, actor=actor)
    return _close_what_cleared({order.pk for order in orders}, set(waiting))


def _close_what_cleared(order_ids: set[int], case_ids: set[int]) -> int:
    """Run the rules over the orders just changed, so their cases close now, not after commit."""
    if not order_ids:
        return 0
    return len(set(detect(order_ids=order_ids).closed) & case_ids)

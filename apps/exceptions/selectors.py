"""Reads of exception cases: the work queues, one case with its history, the open counts.

Every function runs a fixed number of queries, whatever the number of cases listed.
"""

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db import connection
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import BooleanField, Case, DecimalField, F, Lookup, Prefetch, Q, QuerySet, Value, When
from django.db.models.sql.compiler import SQLCompiler
from django.utils import timezone

from apps.billing.visibility import Amounts
from apps.exceptions.models import CaseEvent, ExceptionCase, Queue, SubjectType
from apps.exceptions.roles import queues_of
from apps.partners.models import Partner
from apps.timeline.events import normalize_reference
from apps.timeline.models import Milestone, Order, Reference, Shipment
from apps.timeline.selectors import PREFIX_MIN_LENGTH, OrderTimeline, order_timeline
from controltower.compound import rows_of_slices
from controltower.keyset import Key, KeysetPage, keyset_page, ordering

MINE = "mine"
# The open-case counts of the navigation stop here ("1,000+"): a badge, read on every page.
NAV_COUNT_LIMIT = 1000
OPEN = ExceptionCase.OPEN_STATUSES
SORT_AGE = "age"
SORT_AMOUNT = "amount"
SORT_RISK = "risk"
LAST_MILESTONES = 5
# Words of a case's summary are searched from this length: shorter ones would match nearly every case
# and no index helps find them.
SUMMARY_SEARCH_MIN_LENGTH = 3
# Summary words found in more listed cases than this are checked on each case as the page reads
# them, in order, rather than looked up first (see ``_found_by``).
SUMMARY_BROAD = 1000
# The beginning of a reference finds the cases of at most this many of the references that begin
# so: the first characters of a UPS tracking number (1Z and the shipper's account) name every
# parcel of that shipper.
PREFIX_REFERENCES = 1000


def amounts_hidden_for(user: AbstractBaseUser | AnonymousUser) -> frozenset[str]:
    """The case subjects whose amount at risk ``user`` may not see (it is the charge's or the invoice's)."""
    amounts = Amounts.of(user)
    shown = {SubjectType.FREIGHT_CHARGE: amounts.freight, SubjectType.INVOICE: amounts.invoice}
    return frozenset(subject.value for subject, visible in shown.items() if not visible)


def _listed(cases: QuerySet[ExceptionCase], now: datetime) -> QuerySet[ExceptionCase]:
    """What a queue row shows, in one query: related names and whether the case is overdue."""
    return cases.select_related("rule", "order", "shipment", "partner", "customer", "assignee").annotate(
        is_overdue=Case(
            When(Q(status__in=OPEN, due_at__lt=now), then=Value(True)),
            default=Value(False),
            output_field=BooleanField(),
        )
    )


# How a queue is sorted, as keys for keyset pagination (``controltower.keyset``).
CASE_ORDER = {
    SORT_AGE: [Key("opened_at"), Key("id")],
    SORT_AMOUNT: [Key("shown_amount", descending=True, nullable=True), Key("opened_at"), Key("id")],
    SORT_RISK: [Key("late_probability", descending=True, nullable=True), Key("opened_at"), Key("id")],
}


def case_list(
    *,
    cases: QuerySet[ExceptionCase] | None = None,
    queue: str = "",
    assignee: AbstractBaseUser | None = None,
    rule_id: int | None = None,
    partner: Partner | None = None,
    customer: Partner | None = None,
    region: str = "",
    statuses: Iterable[str] = OPEN,
    older_than_hours: int | None = None,
    min_amount: Decimal | None = None,
    min_risk: float | None = None,
    search: str = "",
    sort: str = SORT_AGE,
    amounts_hidden_for: Iterable[str] = (),
    now: datetime | None = None,
) -> QuerySet[ExceptionCase]:
    """The cases of one queue (or assigned to one person), filtered and sorted, each with ``is_overdue``.

    ``cases`` narrows the starting set (what the person may see). Age sort: oldest first; amount
    sort: largest amount at risk first, cases without an amount last; risk sort: the order most
    likely to miss its promise first, cases without a risk last. ``min_risk`` (0 to 1) keeps the
    cases whose order is at least that likely to be late. ``amounts_hidden_for`` names
    the subject types whose amount the person may not see: the amount filter and sort treat those
    cases as having none, so neither reveals it.
    """
    now = now or timezone.now()
    cases = cases if cases is not None else ExceptionCase.objects.all()
    hidden = list(amounts_hidden_for)
    cases = cases.annotate(
        shown_amount=Case(
            When(subject_type__in=hidden, then=Value(None)),
            default=F("amount_at_risk"),
            output_field=DecimalField(max_digits=16, decimal_places=4),
        )
        if hidden
        else F("amount_at_risk"),
    )
    if queue:
        cases = cases.filter(queue=queue)
    if assignee is not None:
        cases = cases.filter(assignee=assignee)
    statuses = list(statuses)
    if statuses:
        cases = cases.filter(status__in=statuses)
    if rule_id:
        cases = cases.filter(rule_id=rule_id)
    if partner is not None:
        cases = cases.filter(partner=partner)
    if customer is not None:
        cases = cases.filter(customer=customer)
    if region:
        cases = cases.filter(region__iexact=region)
    if older_than_hours is not None:
        cases = cases.filter(opened_at__lte=now - timedelta(hours=older_than_hours))
    if min_amount is not None:
        cases = cases.filter(shown_amount__gte=min_amount)
    if min_risk is not None:
        cases = cases.filter(late_probability__gte=min_risk)
    if search:
        cases = cases.filter(_found_by(cases, search))
    return _as_rows(_listed(cases, now)).order_by(*ordering(CASE_ORDER.get(sort, CASE_ORDER[SORT_AGE])))


# The related columns a queue row and its CSV show: an order carries a dozen projected times that
# a row of fifty would otherwise read, convert and throw away.
ROW_RELATED_COLUMNS = (
    "rule__title",
    "rule__code",
    "order__number",
    "shipment__number",
    "partner__name",
    "partner__code",
    "customer__name",
    "customer__code",
    "assignee__username",
)


def _as_rows(cases: QuerySet[ExceptionCase]) -> QuerySet[ExceptionCase]:
    own = [field.attname for field in ExceptionCase._meta.concrete_fields]
    return cases.only(*own, *ROW_RELATED_COLUMNS)


class _HasWords(Lookup):
    """``field`` holds ``words`` anywhere, whatever their case: ``ILIKE`` on PostgreSQL, which its
    trigram indexes answer (Django's ``icontains`` compares ``UPPER()`` texts, which they do not)."""

    lookup_name = "has_words"

    def process_rhs(self, compiler: SQLCompiler, connection: BaseDatabaseWrapper) -> tuple[str, list]:
        sql, params = super().process_rhs(compiler, connection)
        return sql, [f"%{connection.ops.prep_for_like_query(value)}%" for value in params]

    def as_sql(self, compiler: SQLCompiler, connection: BaseDatabaseWrapper) -> tuple[str, list]:
        lhs, lhs_params = self.process_lhs(compiler, connection)
        rhs, rhs_params = self.process_rhs(compiler, connection)
        if connection.vendor == "postgresql":
            return f"{lhs} ILIKE {rhs}", [*lhs_params, *rhs_params]
        return f"{lhs} LIKE {rhs} ESCAPE '\\'", [*lhs_params, *rhs_params]


def _found_by(cases: QuerySet[ExceptionCase], text: str) -> Q:
    """Which of ``cases`` (a queue's listing, filtered) the search box finds with ``text``.

    A case is found by a reference of its order or shipment (order, PO, shipment, tracking,
    invoice and every other kind), or of one of its order's shipments: as typed, whatever the case
    and spacing, or by its beginning from ``PREFIX_MIN_LENGTH`` characters (at most
    ``PREFIX_REFERENCES`` of the references that begin so). Or by words of its summary, from
    ``SUMMARY_SEARCH_MIN_LENGTH`` characters.

    Each way is read through its own index and the ids found are joined with UNION, so a search
    that finds few cases reads few rows however many cases the queue holds. Words found in more than
    ``SUMMARY_BROAD`` of the listed cases (one query tells) are checked on each case instead, as
    the page reads them in order: there are enough of them near the head of the queue.
    """
    value = normalize_reference(text)
    references = Reference.objects.order_by()
    named = [references.filter(value=value)]
    if len(value) >= PREFIX_MIN_LENGTH:
        # Unordered, so that the index range is read only as far as the limit.
        beginning = references.filter(value__startswith=value).values("value")[:PREFIX_REFERENCES]
        named.append(references.filter(value__in=beginning))
    shipment_ids = Shipment.objects.order_by().filter(Q(number=value) | Q(tracking_number=value)).values("id")
    shipment_ids = shipment_ids.union(*(refs.filter(shipment__isnull=False).values("shipment_id") for refs in named))
    order_ids = Order.objects.order_by().filter(number=value).values("id")
    order_ids = order_ids.union(
        Shipment.orders.through.objects.order_by().filter(shipment_id__in=shipment_ids).values("order_id"),
        *(refs.filter(order__isnull=False).values("order_id") for refs in named),
    )
    cases = cases.order_by()
    by_reference = (
        cases.filter(order_id__in=order_ids).values("id").union(cases.filter(shipment_id__in=shipment_ids).values("id"))
    )
    if len(text) < SUMMARY_SEARCH_MIN_LENGTH:
        return Q(id__in=by_reference)
    has_words = _HasWords(F("summary"), text)
    by_words = cases.filter(has_words)
    if by_words[SUMMARY_BROAD : SUMMARY_BROAD + 1].exists():
        return Q(has_words) | Q(id__in=by_reference)
    return Q(id__in=by_reference.union(by_words.values("id")))


def case_page(
    cases: QuerySet[ExceptionCase], *, sort: str, size: int, after: str | None = None, before: str | None = None
) -> KeysetPage:
    """One page of ``case_list``'s cases, after (or before) a cursor: two queries and a count.

    The page's ids and sort keys are read from the cases alone, through the index of the sort;
    then those cases as a row shows them, by id. In one query PostgreSQL spends longer weighing
    each way to join the six tables a row shows against each index than reading the page (about
    7 ms of planning at a million orders, against under 2 ms for the rows by id).
    """
    keys = CASE_ORDER.get(sort, CASE_ORDER[SORT_AGE])
    fields = {field.name for field in ExceptionCase._meta.concrete_fields}
    keyed = cases.select_related(None).only(*(key.name for key in keys if key.name in fields))
    page = keyset_page(keyed, keys, size=size, after=after, before=before)
    rows = {case.pk: case for case in cases_by_ids(case.pk for case in page.items)}
    return replace(page, items=[rows[case.pk] for case in page.items if case.pk in rows])


def cases_by_ids(ids: Iterable[int], *, now: datetime | None = None) -> list[ExceptionCase]:
    """Cases as a queue row shows them (after an action re-renders them)."""
    return list(_as_rows(_listed(ExceptionCase.objects.filter(id__in=list(ids)), now or timezone.now())).order_by("id"))


def open_counts(*, user: AbstractBaseUser | None = None) -> dict[str, int]:
    """Open (and acknowledged) cases per queue, plus ``mine`` for ``user``: one query.

    Each count stops past ``NAV_COUNT_LIMIT`` (``NAV_COUNT_LIMIT + 1`` means "more"): every page
    shows them, and a queue of 100,000 cases must not cost 100,000 rows read on each.
    """
    open_cases = ExceptionCase.objects.filter(status__in=OPEN).order_by()
    parts = {queue: open_cases.filter(queue=queue) for queue in Queue.values}
    if user is not None and user.pk is not None:
        parts[MINE] = open_cases.filter(assignee_id=user.pk)
    selects, params = [], []
    for cases in parts.values():
        sql, part_params = cases.values("id")[: NAV_COUNT_LIMIT + 1].query.sql_with_params()
        selects.append(f"(SELECT COUNT(*) FROM ({sql}) AS capped)")  # noqa: S608 - Django's own SQL, values bound
        params.extend(part_params)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {', '.join(selects)}", params)  # noqa: S608 - as above
        counts = dict(zip(parts, cursor.fetchone(), strict=True))
    counts.setdefault(MINE, 0)
    return counts


@dataclass(frozen=True)
class CaseDetail:
    """A case expanded in its queue: its history and, when it is about an order, the order's timeline."""

    case: ExceptionCase
    history: list[CaseEvent]
    timeline: OrderTimeline | None

    @property
    def last_milestones(self) -> list[Milestone]:
        if self.timeline is None:
            return []
        return list(reversed(self.timeline.milestones[-LAST_MILESTONES:]))


def case_history(cases: QuerySet[ExceptionCase]) -> QuerySet[ExceptionCase]:
    return cases.prefetch_related(Prefetch("history", queryset=CaseEvent.objects.select_related("actor")))


def case_detail(case_id: int, *, cases: QuerySet[ExceptionCase] | None = None) -> CaseDetail | None:
    """One case with its history (actors included) and its order's timeline; None when not found."""
    cases = cases if cases is not None else ExceptionCase.objects.all()
    case = case_history(_listed(cases.filter(id=case_id), timezone.now())).first()
    if case is None:
        return None
    timeline = order_timeline(case.order_id) if case.order_id else None
    return CaseDetail(case=case, history=list(case.history.all()), timeline=timeline)


def case_api_list(
    *,
    cases: QuerySet[ExceptionCase] | None = None,
    queue: str = "",
    status: str = "",
    rule: str = "",
    min_risk: float | None = None,
    sort: str = "newest",
) -> QuerySet[ExceptionCase]:
    """Cases for the API, newest first (or the most likely late first), with their subject's
    references prefetched."""
    cases = cases if cases is not None else ExceptionCase.objects.all()
    if queue:
        cases = cases.filter(queue=queue)
    if status:
        cases = cases.filter(status=status)
    if rule:
        cases = cases.filter(rule__code=rule)
    if min_risk is not None:
        cases = cases.filter(late_probability__gte=min_risk)
    order = [F("late_probability").desc(nulls_last=True)] if sort == SORT_RISK else []
    return (
        cases.select_related("rule", "order", "shipment", "assignee")
        .prefetch_related("order__references", "shipment__references")
        .order_by(*order, "-opened_at", "-id")
    )


def oldest_open_cases(
    *, cases: QuerySet[ExceptionCase], queues: Iterable[str], assignee: AbstractBaseUser | None = None, each: int = 3
) -> dict[str, list[ExceptionCase]]:
    """The ``each`` oldest open cases of every queue in ``queues`` (and, as ``mine``, of ``assignee``).

    Two queries whatever the number of cases: the ids, each queue's read from the front of its
    open-cases-by-age index (``LIMIT each`` per queue, joined with UNION ALL), then those cases as a
    queue row shows them. ``cases`` narrows the starting set (what the person may work).
    """
    open_cases = cases.filter(status__in=OPEN).order_by()
    parts = {queue: open_cases.filter(queue=queue) for queue in sorted(set(queues))}
    if assignee is not None and assignee.pk is not None:
        parts[MINE] = open_cases.filter(assignee_id=assignee.pk)
    if not parts:
        return {}
    firsts = [part.order_by("opened_at", "id").values_list("id")[:each] for part in parts.values()]
    ids = [pk for (pk,) in rows_of_slices(firsts)]
    found = {case.pk: case for case in cases_by_ids(ids)}
    oldest: dict[str, list[ExceptionCase]] = {name: [] for name in parts}
    for case in sorted(found.values(), key=lambda case: (case.opened_at, case.pk)):
        if case.queue in oldest:
            oldest[case.queue].append(case)
        if MINE in oldest and assignee is not None and case.assignee_id == assignee.pk:
            oldest[MINE].append(case)
    return {name: rows[:each] for name, rows in oldest.items()}


# The first page after sign-in: each queue's oldest cases.
OLDEST_PER_QUEUE = 3


@dataclass(frozen=True)
class QueueSummary:
    code: str
    label: str
    open: int  # at most NAV_COUNT_LIMIT
    capped: bool
    oldest: list[ExceptionCase]


def queue_summaries(user: AbstractBaseUser, cases: QuerySet[ExceptionCase]) -> list[QueueSummary]:
    """The queues ``user`` works, then their own cases: open counts and the oldest of ``cases``."""
    worked = queues_of(user)
    counts = open_counts(user=user)
    oldest = oldest_open_cases(cases=cases, queues=worked, assignee=user, each=OLDEST_PER_QUEUE)
    labels = {**dict(Queue.choices), MINE: "Assigned to me"}
    order = [code for code in Queue.values if code in worked] + [MINE]
    return [
        QueueSummary(
            code=code,
            label=labels[code],
            open=min(counts.get(code, 0), NAV_COUNT_LIMIT),
            capped=counts.get(code, 0) > NAV_COUNT_LIMIT,
            oldest=oldest.get(code, []),
        )
        for code in order
    ]

"""The work queues: list, filter, expand and work exception cases, one at a time or in bulk.

Who may see and work which cases is decided in one place, :func:`permitted_cases`: reading needs
``exceptions.view_exceptioncase`` (every role has it), working needs
``exceptions.change_exceptioncase`` and a role whose queue the case is in. The amount at risk of a
freight or invoice case shows only to people who may see that kind of amount.
"""

import csv
from collections.abc import Iterator

from django.contrib import messages
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST
from django_htmx.middleware import HtmxDetails

from apps.exceptions.forms import (
    DEFAULT_STATUSES,
    CaseAction,
    CaseActionForm,
    CaseFilterForm,
    NotificationPreferenceForm,
)
from apps.exceptions.models import ExceptionCase, Queue
from apps.exceptions.notifications import preference_for
from apps.exceptions.realtime import broadcast_cases_changed_on_commit
from apps.exceptions.roles import queues_of
from apps.exceptions.selectors import MINE, amounts_hidden_for, case_detail, case_list, case_page, cases_by_ids
from apps.exceptions.services import CaseActionError, ReasonCode, cases_act
from controltower.access import role_required
from controltower.http import next_url

VIEW = "exceptions.view_exceptioncase"
WORK = "exceptions.change_exceptioncase"
CASES_PER_PAGE = 50
EXPORT_CHUNK = 500
QUEUE_LABELS = {**dict(Queue.choices), MINE: "My cases"}
DONE = {
    CaseAction.ASSIGN_TO_ME: "Assigned to you",
    CaseAction.ACKNOWLEDGE: "Acknowledged",
    CaseAction.COMMENT: "Commented on",
    CaseAction.RESOLVE: "Resolved",
    CaseAction.DISMISS: "Dismissed",
    CaseAction.RELEASE_HOLD: "Released the invoice hold of",
    CaseAction.TRIGGER_INVOICE: "Invoiced the orders of",
}


class HtmxHttpRequest(HttpRequest):
    htmx: HtmxDetails


# --- permissions: the one place roles will be enforced -----------------------------------------


def permitted_cases(user: AbstractBaseUser | AnonymousUser, *, work: bool = False) -> QuerySet[ExceptionCase]:
    """The cases ``user`` may see (``work=False``: all of them) or act on (the queues of their roles)."""
    if work and user.has_perm(WORK):
        return ExceptionCase.objects.filter(queue__in=queues_of(user))
    if not work and user.has_perm(VIEW):
        return ExceptionCase.objects.all()
    return ExceptionCase.objects.none()


def _abilities(user: AbstractBaseUser) -> dict[str, object]:
    """What the templates may offer: buttons only for what the person's role allows."""
    return {
        "my_queues": queues_of(user) if user.has_perm(WORK) else set(),
        "can_release": user.has_perm("billing.release_invoice"),
        "can_trigger": user.has_perm("billing.trigger_invoice"),
        "amounts_hidden_for": amounts_hidden_for(user),
        "actions_url": reverse("case-actions"),
    }


# --- pages ---------------------------------------------------------------------------------------


def _queue_or_404(queue: str) -> str:
    if queue != MINE and queue not in Queue.values:
        raise Http404("No such queue.")
    return queue


def _filtered(request: HttpRequest, queue: str) -> tuple[CaseFilterForm, QuerySet[ExceptionCase]]:
    data = request.GET.copy()
    if not data.getlist("status"):
        data.setlist("status", DEFAULT_STATUSES)
    form = CaseFilterForm(data, queue="" if queue == MINE else queue)
    scope = {"assignee": request.user} if queue == MINE else {"queue": queue}
    cases = case_list(
        cases=permitted_cases(request.user),
        **scope,
        **form.filters(),
        amounts_hidden_for=amounts_hidden_for(request.user),
    )
    return form, cases


@require_GET
@role_required(VIEW)
def queue_index(request: HttpRequest) -> HttpResponse:
    return redirect("case-queue", queue=MINE)


@require_GET
@role_required(VIEW)
def queue_view(request: HtmxHttpRequest, queue: str) -> HttpResponse:
    """One queue (or my cases); an HTMX request (the live refresh) gets the list and the counters."""
    queue = _queue_or_404(queue)
    form, cases = _filtered(request, queue)
    sort = form.filters()["sort"]
    page = case_page(
        cases, sort=sort, size=CASES_PER_PAGE, after=request.GET.get("after"), before=request.GET.get("before")
    )
    query = request.GET.copy()
    for cursor in ("after", "before", "page"):
        query.pop(cursor, None)
    context = {
        **_abilities(request.user),
        "queue": queue,
        "queue_label": QUEUE_LABELS[queue],
        "form": form,
        "page": page,
        "query": query.urlencode(),
        "page_query": request.GET.urlencode(),
        "next_url": request.get_full_path(),
        "now": timezone.now(),
        "reason_codes": ReasonCode.choices,
    }
    template = "exceptions/queue.html#refresh" if request.htmx else "exceptions/queue.html"
    return render(request, template, context)


class _Echo:
    def write(self, value: str) -> str:
        return value


CSV_HEADER = [
    "id",
    "rule",
    "rule_title",
    "queue",
    "status",
    "severity",
    "summary",
    "subject_type",
    "subject_id",
    "order",
    "shipment",
    "customer",
    "partner",
    "region",
    "amount_at_risk",
    "currency",
    "opened_at",
    "due_at",
    "overdue",
    "assignee",
]


def _cell(value: object) -> str:
    """A CSV cell that a spreadsheet will not run as a formula."""
    text = "" if value is None else str(value)
    return f"'{text}" if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def _csv_rows(cases: QuerySet[ExceptionCase], hidden: frozenset[str]) -> Iterator[list[str]]:
    """One row per case; ``hidden``: subject types whose amount at risk is left empty."""
    yield CSV_HEADER
    for case in cases.iterator(chunk_size=EXPORT_CHUNK):
        amount = "" if case.amount_at_risk is None or case.subject_type in hidden else case.amount_at_risk
        yield [
            _cell(value)
            for value in (
                case.pk,
                case.rule.code,
                case.rule.title,
                case.queue,
                case.status,
                case.severity,
                case.summary,
                case.subject_type,
                case.subject_id,
                case.order.number if case.order else "",
                case.shipment.number if case.shipment else "",
                case.customer.code if case.customer else "",
                case.partner.code if case.partner else "",
                case.region,
                amount,
                case.currency,
                case.opened_at.isoformat(),
                case.due_at.isoformat(),
                "yes" if case.is_overdue else "no",
                case.assignee.get_username() if case.assignee else "",
            )
        ]


@require_GET
@role_required(VIEW)
def queue_export(request: HttpRequest, queue: str) -> StreamingHttpResponse:
    """Every case matching the page's filters, as CSV, streamed."""
    queue = _queue_or_404(queue)
    _, cases = _filtered(request, queue)
    writer = csv.writer(_Echo())
    rows = _csv_rows(cases, amounts_hidden_for(request.user))
    response = StreamingHttpResponse((writer.writerow(row) for row in rows), content_type="text/csv")
    stamp = timezone.now().strftime("%Y%m%d-%H%M")
    response["Content-Disposition"] = f'attachment; filename="cases-{queue}-{stamp}.csv"'
    return response


@require_GET
@role_required(VIEW)
def case_detail_view(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """A case expanded in place: its order's timeline summary, its history and the actions."""
    detail = case_detail(pk, cases=permitted_cases(request.user))
    if detail is None:
        raise Http404("No such case.")
    context = {
        **_abilities(request.user),
        "detail": detail,
        "case": detail.case,
        "now": timezone.now(),
        "reason_codes": ReasonCode.choices,
    }
    template = "exceptions/case_detail.html#detail" if request.htmx else "exceptions/case_detail.html"
    return render(request, template, context)


# --- actions -------------------------------------------------------------------------------------


def _plural(count: int) -> str:
    return f"{count} case" if count == 1 else f"{count} cases"


def _next_url(request: HttpRequest) -> str:
    return next_url(request, reverse("case-queue", args=[MINE]))


@require_POST
@role_required(WORK)
def case_actions(request: HtmxHttpRequest) -> HttpResponse:
    """Assign, acknowledge, comment, resolve or dismiss the selected cases.

    HTMX gets the outcome for the form that posted, the rows re-rendered (or removed once closed)
    and the counters, out of band; a plain POST is redirected back with a message.
    """
    form = CaseActionForm(request.POST)
    errors: list[str] = []
    rows: list[ExceptionCase] = []
    message = ""
    if form.is_valid():
        data = form.cleaned_data
        ids = data["case"]
        cases = permitted_cases(request.user, work=True).filter(id__in=ids)
        found = set(cases.values_list("id", flat=True))
        missing = sorted(set(ids) - found)
        if missing and permitted_cases(request.user).filter(id__in=missing).exists():
            raise PermissionDenied("These cases are in a queue your role does not work.")
        if missing:
            errors.append(f"No such case: {', '.join(f'#{pk}' for pk in missing)}.")
        else:
            try:
                done = cases_act(
                    action=data["action"],
                    cases=cases,
                    actor=request.user,
                    reason_code=data["reason_code"],
                    note=data["note"],
                )
            except CaseActionError as error:
                errors.append(str(error))
            else:
                rows = cases_by_ids(found)
                broadcast_cases_changed_on_commit(case.queue for case in rows)
                message = f"{DONE[data['action']]} {_plural(done)}."
                if done < len(found):
                    message += f" {_plural(len(found) - done)} left as they were (already closed or done)."
    else:
        errors = [error for field_errors in form.errors.values() for error in field_errors]

    if not request.htmx:
        for error in errors:
            messages.error(request, error)
        if message:
            messages.success(request, message)
        return redirect(_next_url(request))

    detail = None
    if rows and len(rows) == 1 and rows[0].is_open and request.POST.get("from") == "detail":
        detail = case_detail(rows[0].pk)
    queue = request.POST.get("queue", "")
    context = {
        **_abilities(request.user),
        "errors": errors,
        "message": message,
        "rows": rows,
        "detail": detail,
        "now": timezone.now(),
        "queue": queue if queue in QUEUE_LABELS else "",
        "next_url": _next_url(request),
        "reason_codes": ReasonCode.choices,
    }
    return render(request, "exceptions/_action_result.html", context)


@role_required(VIEW)
def notification_settings(request: HttpRequest) -> HttpResponse:
    """Each person chooses how they hear about their queues: a daily digest, critical cases at once."""
    form = NotificationPreferenceForm(request.POST or None, instance=preference_for(request.user))
    if request.method == "POST" and form.is_valid():
        form.save()
        messages.success(request, "Notification settings saved.")
        return redirect("notification-settings")
    queues = sorted(QUEUE_LABELS[q] for q in queues_of(request.user))
    return render(request, "exceptions/notifications.html", {"form": form, "queues": queues})

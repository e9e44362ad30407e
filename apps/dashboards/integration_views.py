"""Integration admin pages: integration health, the dead letter list, one message's trace, replay."""

from django import forms
from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from apps.dashboards.health import NONE, WINDOW, dead_letters, integration_health
from apps.dashboards.selectors import dead_letter_list, dead_letter_page
from apps.dashboards.trace import message_trace
from apps.ingest.models import InboundMessage
from apps.ingest.services import messages_replay
from apps.partners.models import Channel, Partner
from controltower.access import role_required
from controltower.http import next_url

VIEW = "ingest.view_inboundmessage"
REPLAY = "ingest.replay_inboundmessage"
DEAD_LETTERS_PER_PAGE = 50


class DeadLetterFilterForm(forms.Form):
    """Partner (by code) and channel (by id); NONE picks unknown senders, or messages without a channel."""

    partner = forms.ChoiceField(required=False)
    channel = forms.ChoiceField(required=False)

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.fields["partner"].choices = [
            ("", "All partners"),
            (NONE, "Unknown sender"),
            *((p.code, f"{p.name} ({p.code})") for p in Partner.objects.order_by("code")),
        ]
        channels = Channel.objects.filter(direction=Channel.Direction.INBOUND).select_related("partner")
        self.fields["channel"].choices = [
            ("", "All channels"),
            (NONE, "No channel"),
            *((str(c.pk), str(c)) for c in channels),
        ]

    def filters(self) -> dict[str, str]:
        if not self.is_valid():
            return {}
        return {name: self.cleaned_data[name] for name in ("partner", "channel")}


class ReplayForm(DeadLetterFilterForm):
    """The messages to replay: ``ids``, or with ``all`` every dead letter matching the filters."""

    ids = forms.ModelMultipleChoiceField(queryset=InboundMessage.objects.only("pk"), required=False)
    all = forms.BooleanField(required=False)

    def clean(self) -> dict:
        data = super().clean()
        if not data.get("ids") and not data.get("all"):
            raise forms.ValidationError("Choose the messages to replay.")
        return data

    def message_ids(self) -> list[int]:
        if self.cleaned_data["ids"]:
            return [message.pk for message in self.cleaned_data["ids"]]
        return list(dead_letters(**self.filters()).values_list("pk", flat=True))


@require_GET
@role_required(VIEW)
def integration_health_view(request: HttpRequest) -> HttpResponse:
    now = timezone.now()
    rows = integration_health(now=now)
    context = {"rows": rows, "now": now, "window_hours": int(WINDOW.total_seconds() // 3600), "none": NONE}
    return render(request, "dashboards/health.html", context)


@require_GET
@role_required(VIEW)
def dead_letters_view(request: HttpRequest) -> HttpResponse:
    """Dead letters, newest first, a page at a time after (or before) a cursor, with about how many."""
    form = DeadLetterFilterForm(request.GET)
    page = dead_letter_page(
        dead_letter_list(**form.filters()),
        size=DEAD_LETTERS_PER_PAGE,
        after=request.GET.get("after"),
        before=request.GET.get("before"),
    )
    query = request.GET.copy()
    for cursor in ("after", "before", "page"):
        query.pop(cursor, None)
    context = {"form": form, "page": page, "query": query.urlencode(), "can_replay": request.user.has_perm(REPLAY)}
    return render(request, "dashboards/dead_letters.html", context)


@require_GET
@role_required(VIEW)
def message_trace_view(request: HttpRequest, pk: int) -> HttpResponse:
    trace = message_trace(pk)
    if trace is None:
        raise Http404("No such message.")
    context = {
        "trace": trace,
        "message": trace.message,
        "can_replay": trace.replayable and request.user.has_perm(REPLAY),
    }
    return render(request, "dashboards/trace.html", context)


@require_POST
@role_required(REPLAY)
def messages_replay_view(request: HttpRequest) -> HttpResponse:
    """Queue the chosen dead letters again and go back where the button was."""
    form = ReplayForm(request.POST)
    if form.is_valid():
        count = messages_replay(form.message_ids())
        noun = "message" if count == 1 else "messages"
        messages.success(request, f"{count} {noun} queued for replay.")
    else:
        for errors in form.errors.values():
            for error in errors:
                messages.error(request, error)
    return redirect(next_url(request, reverse("dead-letters")))

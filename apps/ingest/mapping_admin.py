"""Onboarding a partner without code: a channel's mapping edited in admin, previewed on a sample
document before it is saved, and every saved version kept with its author and what it changed.

The page is ``admin/partners/channelmappingversion/channel/<id>/``; the list of versions of every
channel is the audit trail. Editing, previewing and reverting need ``partners.change_channel_mapping``
(the Integration Admin role); a sample is parsed with ``message_preview``: nothing is stored or
applied, and the sample is shown only as escaped text.
"""

from copy import copy
from dataclasses import dataclass, field
from itertools import zip_longest
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html, format_html_join
from django.views.decorators.http import require_POST

from apps.ingest.mapping import unmapped_explained
from apps.ingest.parsers import known_formats
from apps.ingest.services import Preview, message_preview
from apps.partners.admin import JSONObjectField
from apps.partners.mapping import mapping_problems
from apps.partners.models import Channel, ChannelMappingVersion
from apps.partners.services import MappingRefused, channel_mapping_revert, channel_mapping_save
from apps.timeline.events import CanonicalEvent

MAPPING_PERMISSION = "partners.change_channel_mapping"
# A sample is parsed twice in the request (current and edited mapping): the message limit, but
# no more than this.
PREVIEW_MAX_BYTES = min(settings.INGEST_MAX_MESSAGE_BYTES, 2 * 2**20)
PREVIEW_MAX_EVENTS = 200  # rows shown; the counts cover every event
RAW_SHOWN_CHARS = 300
HISTORY_SHOWN = 50


class MappingForm(forms.Form):
    mapping = JSONObjectField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 16, "cols": 90, "spellcheck": "false", "class": "mapping-json"}),
        help_text="The channel's mapping overrides as a JSON object (status_codes, csv, json, ...).",
    )
    comment = forms.CharField(
        required=False, max_length=500, help_text="Why: kept in the history with your name (e.g. the partner's ticket)."
    )
    base_version = forms.IntegerField(widget=forms.HiddenInput, min_value=0)
    sample_text = forms.CharField(
        label="Sample document",
        required=False,
        strip=False,
        widget=forms.Textarea(attrs={"rows": 8, "cols": 90, "spellcheck": "false", "class": "mapping-sample"}),
        help_text="Paste a document the partner sent, or upload it below.",
    )
    sample_file = forms.FileField(label="or a sample file", required=False)
    format = forms.ChoiceField(
        label="Read the sample as",
        choices=[],
        initial="auto",
        help_text="auto: as the channel reads its messages.",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["format"].choices = [("auto", "auto"), *((name, name) for name in known_formats())]

    def sample(self) -> bytes | None:
        """The sample's bytes, or None without one; a form error when it is too large."""
        upload = self.cleaned_data.get("sample_file")
        if upload is not None:
            if upload.size > PREVIEW_MAX_BYTES:
                limit = f"The sample is {upload.size:,} bytes; the limit is {PREVIEW_MAX_BYTES:,}."
                self.add_error("sample_file", limit)
                return None
            return upload.read(PREVIEW_MAX_BYTES + 1) or None
        data = (self.cleaned_data.get("sample_text") or "").encode()
        if len(data) > PREVIEW_MAX_BYTES:
            self.add_error("sample_text", f"The sample is {len(data):,} bytes; the limit is {PREVIEW_MAX_BYTES:,}.")
            return None
        return data if data.strip() else None


@dataclass
class EventRow:
    """One event of the sample as the current and the edited mapping read it."""

    before: dict[str, Any] | None
    after: dict[str, Any] | None

    @property
    def changed(self) -> bool:
        return _essence(self.before) != _essence(self.after)


@dataclass
class Comparison:
    before: Preview
    after: Preview | None
    rows: list[EventRow] = field(default_factory=list)
    hidden: int = 0
    now_mapped: list[str] = field(default_factory=list)
    still_unmapped: list[str] = field(default_factory=list)
    explained: list[str] = field(default_factory=list)

    @property
    def changed(self) -> int:
        return sum(row.changed for row in self.rows)


def _essence(event: dict[str, Any] | None) -> Any:
    return event and (event["kind"], event["references"], event["status_code"])


def _shown(event: CanonicalEvent) -> dict[str, Any]:
    raw = event.raw or ""
    return {
        "kind": event.kind.value,
        "occurred_at": event.occurred_at.isoformat(),
        "references": ", ".join(f"{ref.kind.value} {ref.value}" for ref in event.references),
        "status_code": str(event.attributes.get("status_code") or ""),
        "lines": len(event.lines),
        "raw": raw if len(raw) <= RAW_SHOWN_CHARS else raw[: RAW_SHOWN_CHARS - 1] + "…",
    }


def compare(*, channel: Channel, body: bytes, fmt: str, mapping: dict[str, Any] | None) -> Comparison:
    """The sample's events with the channel's mapping and, when given, with ``mapping`` instead."""
    before = message_preview(body=body, format=fmt, partner=channel.partner, channel=channel)
    after = None
    if mapping is not None:
        edited = copy(channel)
        edited.mapping_overrides = mapping
        after = message_preview(body=body, format=fmt, partner=channel.partner, channel=edited)
    first = before.document.events if before.document else []
    second = after.document.events if after and after.document else []
    pairs = list(zip_longest(first[:PREVIEW_MAX_EVENTS], second[:PREVIEW_MAX_EVENTS] if after else []))
    rows = [EventRow(before=_shown(b) if b else None, after=_shown(a) if a else None) for b, a in pairs]
    unmapped_before = set(before.document.unmapped_codes) if before.document else set()
    final = after or before
    unmapped_after = set(final.document.unmapped_codes) if final.document else set()
    return Comparison(
        before=before,
        after=after,
        rows=rows,
        hidden=max(len(first), len(second)) - len(rows),
        now_mapped=sorted(unmapped_before - unmapped_after) if after else [],
        still_unmapped=sorted(unmapped_after),
        explained=unmapped_explained(final.format, sorted(unmapped_after)),
    )


@admin.register(ChannelMappingVersion)
class ChannelMappingVersionAdmin(admin.ModelAdmin):
    """The audit trail of mapping changes, every channel's; read only."""

    list_display = ("channel", "number", "author_name", "created_at", "sensitive", "comment")
    list_filter = ("channel__partner", "created_at")
    list_select_related = ("channel__partner",)
    search_fields = ("channel__code", "channel__partner__code", "author_name", "comment")
    readonly_fields = ("channel", "number", "author_name", "created_at", "comment", "reverted_to", "changes_shown")
    fields = readonly_fields
    date_hierarchy = "created_at"

    class Media:
        css = {"all": ["css/admin-mapping.css"]}

    def has_view_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return request.user.has_perm(MAPPING_PERMISSION) or super().has_view_permission(request, obj)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    @admin.display(description="touches")
    def sensitive(self, version: ChannelMappingVersion) -> str:
        return ", ".join(version.areas) or "-"

    @admin.display(description="changes")
    def changes_shown(self, version: ChannelMappingVersion) -> str:
        return format_html(
            '<table class="mapping-changes"><tr><th>key</th><th>before</th><th>after</th></tr>{}</table>',
            format_html_join(
                "",
                "<tr><td><code>{}</code></td><td>{}</td><td>{}</td></tr>",
                ((c["path"], _value(c["before"]), _value(c["after"])) for c in version.changes),
            ),
        )

    def get_urls(self) -> list[URLPattern]:
        wrap = self.admin_site.admin_view
        return [
            path("channel/<int:channel_id>/", wrap(self.mapping_view), name="partners_channelmappingversion_channel"),
            path(
                "channel/<int:channel_id>/revert/<int:number>/",
                wrap(require_POST(self.revert_view)),
                name="partners_channelmappingversion_revert",
            ),
            *super().get_urls(),
        ]

    def mapping_view(self, request: HttpRequest, channel_id: int) -> HttpResponse:
        """Edit a channel's mapping: preview a sample with the current and the edited mapping side by
        side, then save it as a new version."""
        if not request.user.has_perm(MAPPING_PERMISSION):
            raise PermissionDenied
        channel = get_object_or_404(Channel.objects.select_related("partner", "customer"), pk=channel_id)
        comparison = None
        problems: list[str] = []
        if request.method == "POST":
            form = MappingForm(request.POST, request.FILES)
            if form.is_valid():
                mapping = form.cleaned_data["mapping"]
                problems = mapping_problems(channel.format, mapping)
                if "save" in request.POST and not problems:
                    saved = self._save(request, form, channel, mapping)
                    if saved:
                        return HttpResponseRedirect(request.path)
                else:
                    body = form.sample()
                    if body is None and not form.errors:
                        form.add_error("sample_text", "Paste or upload a sample to preview.")
                    elif body is not None:
                        comparison = compare(
                            channel=channel,
                            body=body,
                            fmt=form.cleaned_data["format"],
                            mapping=None if problems else mapping,
                        )
        else:
            form = MappingForm(initial={"mapping": channel.mapping_overrides, "base_version": channel.mapping_version})
        context = {
            **self.admin_site.each_context(request),
            "title": f"Mapping of {channel}",
            "opts": self.model._meta,
            "channel": channel,
            "channel_url": reverse("admin:partners_channel_change", args=[channel.pk]),
            "form": form,
            "problems": problems,
            "comparison": comparison,
            "versions": self._history(channel),
            "media": self.media + form.media,
        }
        return TemplateResponse(request, "admin/partners/channel_mapping.html", context)

    def _save(self, request: HttpRequest, form: MappingForm, channel: Channel, mapping: dict[str, Any]) -> bool:
        try:
            version = channel_mapping_save(
                channel=channel,
                mapping=mapping,
                author=request.user,
                comment=form.cleaned_data["comment"],
                expected_version=form.cleaned_data["base_version"],
            )
        except MappingRefused as exc:
            for problem in exc.problems:
                form.add_error("mapping", problem)
            return False
        if version is None:
            self.message_user(request, "The mapping is unchanged: no new version.", messages.INFO)
        else:
            touched = f" It touches {', '.join(version.areas)}." if version.areas else ""
            self.message_user(
                request,
                f"Saved as version {version.number}: messages processed from now on, and dead letters "
                f"replayed, read it.{touched}",
                messages.SUCCESS,
            )
        return True

    def revert_view(self, request: HttpRequest, channel_id: int, number: int) -> HttpResponse:
        if not request.user.has_perm(MAPPING_PERMISSION):
            raise PermissionDenied
        channel = get_object_or_404(Channel, pk=channel_id)
        get_object_or_404(ChannelMappingVersion, channel=channel, number=number)
        try:
            version = channel_mapping_revert(channel=channel, number=number, author=request.user)
        except MappingRefused as exc:
            self.message_user(request, f"Version {number} cannot be restored: {exc}", messages.ERROR)
        else:
            if version is None:
                self.message_user(request, f"Version {number}'s mapping is already the current one.", messages.INFO)
            else:
                self.message_user(request, f"Version {number} restored as version {version.number}.", messages.SUCCESS)
        return HttpResponseRedirect(reverse("admin:partners_channelmappingversion_channel", args=[channel.pk]))

    def _history(self, channel: Channel) -> QuerySet[ChannelMappingVersion]:
        return ChannelMappingVersion.objects.filter(channel=channel).order_by("-number")[:HISTORY_SHOWN]


def _value(value: Any) -> str:
    return "(none)" if value is None else str(value)

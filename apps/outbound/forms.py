"""Forms of the delivery log (query strings and replays) and the list-as-text field of the admin."""

import re
from typing import Any

from django import forms
from django.db.models import QuerySet

from apps.outbound.models import Delivery, Subscription

SEPARATORS = re.compile(r"[,\n]")
# Bounds of a subscription's retries, in the admin and the API: at least one attempt, and a
# sender is never held for long by one slow receiver.
MAX_ATTEMPTS_LIMIT = 100
TIMEOUT_LIMIT_SECONDS = 300


class TextListField(forms.CharField):
    """A list of strings edited as text: one per line, or separated by commas; duplicates dropped."""

    widget = forms.Textarea(attrs={"rows": 4, "cols": 60, "spellcheck": "false"})

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, list | tuple):
            return "\n".join(str(item) for item in value)
        return value

    def to_python(self, value: Any) -> list[str]:  # type: ignore[override]
        if isinstance(value, list | tuple):
            items = [str(item) for item in value]
        else:
            items = SEPARATORS.split(super().to_python(value) or "")
        return list(dict.fromkeys(item.strip() for item in items if item.strip()))


class DeliveryFilterForm(forms.Form):
    """The delivery log's query string: an optional status."""

    status = forms.ChoiceField(choices=[("", "All statuses"), *Delivery.Status.choices], required=False)

    def status_filter(self) -> str | None:
        if not self.is_valid():
            return None
        return self.cleaned_data["status"] or None


class ReplayForm(forms.Form):
    """Deliveries of one subscription to send again: chosen ``ids``, or ``all`` its dead letters."""

    ids = forms.ModelMultipleChoiceField(queryset=Delivery.objects.none(), required=False)
    all = forms.BooleanField(required=False)

    def __init__(self, *args: Any, subscription: Subscription, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.subscription = subscription
        self.fields["ids"].queryset = Delivery.objects.filter(subscription=subscription).only("pk")

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if not data.get("ids") and not data.get("all"):
            raise forms.ValidationError("Choose the deliveries to replay.")
        return data

    def deliveries(self) -> QuerySet[Delivery]:
        """The deliveries to replay (the replay service skips any that are not dead)."""
        if self.cleaned_data.get("all"):
            return Delivery.objects.filter(subscription=self.subscription, status=Delivery.Status.DEAD)
        return Delivery.objects.filter(pk__in=[delivery.pk for delivery in self.cleaned_data["ids"]])

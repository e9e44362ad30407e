from datetime import date, timedelta

from django import forms

from apps.dashboards.models import Metric
from apps.dashboards.selectors import GRAINS, KpiFilter
from apps.partners.models import Partner

PRESETS = {"7": 7, "30": 30, "90": 90}
MAX_DAYS = 731


class KpiFilterForm(forms.Form):
    """The dashboard's filter bar: a period (preset or from–to), a grain and the dimensions."""

    period = forms.ChoiceField(
        choices=[("7", "Last 7 days"), ("30", "Last 30 days"), ("90", "Last 90 days"), ("custom", "From – to")],
        required=False,
        initial="30",
    )
    start = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}), label="From")
    end = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}), label="To")
    grain = forms.ChoiceField(choices=[(g, f"By {g}") for g in GRAINS], required=False)
    partner = forms.ModelChoiceField(
        queryset=Partner.objects.filter(kind__in=[Partner.Kind.CARRIER, Partner.Kind.WAREHOUSE]),
        required=False,
        empty_label="All carriers and warehouses",
        to_field_name="code",
    )
    customer = forms.ModelChoiceField(
        queryset=Partner.objects.filter(kind=Partner.Kind.CUSTOMER),
        required=False,
        empty_label="All customers",
        to_field_name="code",
    )
    region = forms.CharField(required=False, max_length=60)
    compare = forms.ChoiceField(
        choices=Metric.choices, required=False, label="Compare partners on", initial=Metric.OTIF
    )

    def __init__(self, *args, today: date, regions: list[str] = (), **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.today = today
        self.fields["region"].widget = forms.Select(choices=[("", "All regions"), *((r, r) for r in regions)])

    def clean(self) -> dict:
        data = super().clean()
        start, end = data.get("start"), data.get("end")
        if data.get("period") == "custom" or (start and end and not data.get("period")):
            if not (start and end):
                raise forms.ValidationError("Give both dates of the period.")
            if start > end:
                raise forms.ValidationError("The period starts after it ends.")
            if (end - start).days > MAX_DAYS:
                raise forms.ValidationError(f"Choose a period of at most {MAX_DAYS} days.")
        return data

    def kpi_filter(self) -> KpiFilter:
        """The filter asked for, or the last 30 days when the form is empty or invalid."""
        data = self.cleaned_data if self.is_valid() else {}
        start, end = data.get("start"), data.get("end")
        if not (data.get("period") in ("custom", "") and start and end):
            days = PRESETS.get(data.get("period") or "30", 30)
            start, end = self.today - timedelta(days=days - 1), self.today
        partner, customer = data.get("partner"), data.get("customer")
        return KpiFilter(
            start=start,
            end=end,
            grain=data.get("grain") or "day",
            partner_id=partner.id if partner else None,
            customer_id=customer.id if customer else None,
            region=data.get("region") or "",
        )

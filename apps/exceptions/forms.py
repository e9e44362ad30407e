"""Forms of the work queues: the filters (a query string) and the actions on one or many cases."""

from django import forms

from apps.exceptions.models import ExceptionCase, ExceptionRule, NotificationPreference
from apps.exceptions.selectors import SORT_AGE, SORT_AMOUNT, SORT_RISK
from apps.exceptions.services import CaseAction, ReasonCode
from apps.partners.models import Partner

DEFAULT_STATUSES = list(ExceptionCase.OPEN_STATUSES)


class CaseFilterForm(forms.Form):
    """Filters of a queue page and of its CSV export; every field is optional."""

    q = forms.CharField(
        label="Search",
        max_length=100,
        required=False,
        strip=True,
        widget=forms.TextInput(
            attrs={"placeholder": "Order, PO, shipment or tracking number (or its start), or words", "type": "search"}
        ),
    )
    rule = forms.ModelChoiceField(queryset=ExceptionRule.objects.none(), required=False, empty_label="All rules")
    partner = forms.ModelChoiceField(
        queryset=Partner.objects.exclude(kind=Partner.Kind.CUSTOMER).order_by("name"),
        required=False,
        empty_label="All partners",
    )
    # Typed, not chosen from a list: a shipper may have thousands of customers.
    customer = forms.CharField(
        max_length=200,
        required=False,
        strip=True,
        widget=forms.TextInput(attrs={"placeholder": "Code or name"}),
    )
    region = forms.CharField(max_length=60, required=False, strip=True)
    status = forms.MultipleChoiceField(
        choices=ExceptionCase.Status.choices, required=False, widget=forms.CheckboxSelectMultiple
    )
    age = forms.IntegerField(label="Older than (hours)", min_value=0, max_value=24 * 365, required=False)
    min_amount = forms.DecimalField(
        label="Amount at least", min_value=0, max_digits=16, decimal_places=4, required=False
    )
    min_risk = forms.IntegerField(label="Late risk at least (%)", min_value=0, max_value=100, required=False)
    sort = forms.ChoiceField(
        choices=[
            (SORT_AGE, "Oldest first"),
            (SORT_AMOUNT, "Largest amount first"),
            (SORT_RISK, "Most likely late first"),
        ],
        required=False,
    )

    def __init__(self, *args: object, queue: str = "", **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        rules = ExceptionRule.objects.order_by("title")
        self.fields["rule"].queryset = rules.filter(queue=queue) if queue else rules

    def clean_customer(self) -> Partner | None:
        """The customer whose code or name this is, whatever the case."""
        typed = self.cleaned_data["customer"]
        if not typed:
            return None
        customers = Partner.objects.filter(kind=Partner.Kind.CUSTOMER)
        customer = customers.filter(code__iexact=typed).first() or customers.filter(name__iexact=typed).first()
        if customer is None:
            raise forms.ValidationError("No customer has this code or name.")
        return customer

    def filters(self) -> dict:
        """Keyword arguments for ``selectors.case_list``; the defaults when the form is not valid."""
        data = self.cleaned_data if self.is_valid() else {}
        rule = data.get("rule")
        return {
            "search": data.get("q", ""),
            "rule_id": rule.pk if rule else None,
            "partner": data.get("partner"),
            "customer": data.get("customer"),
            "region": data.get("region", ""),
            "statuses": data.get("status") or DEFAULT_STATUSES,
            "older_than_hours": data.get("age"),
            "min_amount": data.get("min_amount"),
            "min_risk": data["min_risk"] / 100 if data.get("min_risk") is not None else None,
            "sort": data.get("sort") or SORT_AGE,
        }


CLOSING_ACTIONS = (CaseAction.RESOLVE, CaseAction.DISMISS)
REASON_REQUIRED = "Choose a reason to resolve or dismiss."
NOTE_REQUIRED = "Write a comment."
MAX_CASES_PER_ACTION = 500


class CaseActionForm(forms.Form):
    """One action on one or many cases: a reason is required to close, a note to comment."""

    case = forms.TypedMultipleChoiceField(
        coerce=int,
        error_messages={"required": "Select at least one case."},
    )
    action = forms.ChoiceField(choices=CaseAction.choices, error_messages={"required": "Choose an action."})
    reason_code = forms.ChoiceField(
        label="Reason", choices=[("", "Choose a reason…"), *ReasonCode.choices], required=False
    )
    note = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), max_length=2000, required=False, strip=True)

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        # Any whole number is a valid choice; which cases exist and may be worked is the view's to check.
        ids = self.data.getlist("case") if hasattr(self.data, "getlist") else self.data.get("case", [])
        self.fields["case"].choices = [(value, value) for value in ids if str(value).isdigit()]

    def clean_case(self) -> list[int]:
        cases = self.cleaned_data["case"]
        if len(cases) > MAX_CASES_PER_ACTION:
            raise forms.ValidationError(f"Work at most {MAX_CASES_PER_ACTION} cases at once.")
        return cases

    def clean(self) -> dict:
        data = super().clean()
        action = data.get("action")
        if action in CLOSING_ACTIONS and not data.get("reason_code"):
            self.add_error("reason_code", REASON_REQUIRED)
        if action == CaseAction.COMMENT and not data.get("note"):
            self.add_error("note", NOTE_REQUIRED)
        return data


class NotificationPreferenceForm(forms.ModelForm):
    class Meta:
        model = NotificationPreference
        fields = ("daily_digest", "critical_immediately")

"""Shapes of ``/api/v1/cases/``: the query, a case, a case with its history, an action."""

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from apps.exceptions.forms import CaseAction
from apps.exceptions.models import CaseEvent, ExceptionCase, Queue
from apps.exceptions.services import ReasonCode
from apps.timeline.serializers import OffsetDateTimeField, ReferenceSerializer


class CaseQuerySerializer(serializers.Serializer):
    """Input of ``GET /api/v1/cases/``; every filter is optional."""

    queue = serializers.ChoiceField(choices=Queue.choices, required=False)
    status = serializers.ChoiceField(choices=ExceptionCase.Status.choices, required=False)
    rule = serializers.CharField(max_length=40, required=False, help_text="A rule code, e.g. released_not_picked.")
    min_risk = serializers.FloatField(
        required=False, min_value=0, max_value=1, help_text="Only cases whose order is at least this likely to be late."
    )
    sort = serializers.ChoiceField(
        choices=[("newest", "Newest first"), ("risk", "Most likely late first, cases without a risk last")],
        required=False,
        default="newest",
    )


class SubjectSerializer(serializers.Serializer):
    """What the case is about, and the references of its order and shipment."""

    type = serializers.CharField(source="subject_type")
    id = serializers.IntegerField(source="subject_id")
    order = serializers.CharField(source="order.number", default=None, allow_null=True)
    shipment = serializers.CharField(source="shipment.number", default=None, allow_null=True)
    references = serializers.SerializerMethodField()

    @extend_schema_field(ReferenceSerializer(many=True))
    def get_references(self, case: ExceptionCase) -> list[dict[str, str]]:
        """The order's and the shipment's references (prefetched by the selector)."""
        refs = []
        if case.order is not None:
            refs += [(ref.kind, ref.value) for ref in case.order.references.all()]
        if case.shipment is not None:
            refs += [(ref.kind, ref.value) for ref in case.shipment.references.all()]
        return [{"kind": kind, "value": value} for kind, value in sorted(set(refs))]


class CaseSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    rule = serializers.CharField(source="rule.code")
    rule_title = serializers.CharField(source="rule.title")
    queue = serializers.ChoiceField(choices=Queue.choices)
    severity = serializers.CharField()
    # A plain string (not an enum component): "status" enums of other endpoints would collide by name.
    status = serializers.CharField(help_text="open, acknowledged, resolved or dismissed.")
    summary = serializers.CharField()
    subject = SubjectSerializer(source="*")
    region = serializers.CharField()
    amount_at_risk = serializers.DecimalField(
        max_digits=16,
        decimal_places=4,
        allow_null=True,
        help_text="Null also on freight and invoice cases when your role may not see those amounts.",
    )
    currency = serializers.CharField()
    late_probability = serializers.FloatField(
        allow_null=True, help_text="While open: the probability that the case's order misses its promise."
    )
    opened_at = OffsetDateTimeField()
    due_at = OffsetDateTimeField()
    resolved_at = OffsetDateTimeField(allow_null=True)
    resolution = serializers.CharField()
    resolution_note = serializers.CharField()
    assignee = serializers.CharField(source="assignee.get_username", default=None, allow_null=True)

    def to_representation(self, case: ExceptionCase) -> dict:
        """``context["amounts_hidden_for"]``: the subject types whose amount the reader may not see."""
        data = super().to_representation(case)
        if case.subject_type in self.context["amounts_hidden_for"]:
            data["amount_at_risk"] = None
        return data


class CaseEventSerializer(serializers.Serializer):
    at = OffsetDateTimeField()
    actor = serializers.CharField(source="actor.get_username", default=None, allow_null=True)
    action = serializers.ChoiceField(choices=CaseEvent.Action.choices)
    reason_code = serializers.CharField()
    note = serializers.CharField()


class CaseDetailSerializer(CaseSerializer):
    history = CaseEventSerializer(source="history.all", many=True)


class CaseActionSerializer(serializers.Serializer):
    """Input of ``POST /api/v1/cases/<id>/actions/``: a reason is required to resolve or dismiss."""

    action = serializers.ChoiceField(choices=CaseAction.choices)
    reason_code = serializers.ChoiceField(choices=ReasonCode.choices, required=False, allow_blank=True)
    note = serializers.CharField(max_length=2000, required=False, allow_blank=True, trim_whitespace=True)

    def validate(self, attrs: dict) -> dict:
        action = attrs["action"]
        if action in (CaseAction.RESOLVE, CaseAction.DISMISS) and not attrs.get("reason_code"):
            raise serializers.ValidationError({"reason_code": ["A reason is required to resolve or dismiss."]})
        if action == CaseAction.COMMENT and not attrs.get("note"):
            raise serializers.ValidationError({"note": ["A comment needs some text."]})
        return attrs

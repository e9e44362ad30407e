from rest_framework import serializers

from apps.predictions.models import Prediction


class PredictionQuerySerializer(serializers.Serializer):
    min_risk = serializers.FloatField(
        required=False, min_value=0, max_value=1, help_text="Only shipments at least this likely to miss the promise."
    )
    customer = serializers.CharField(required=False, max_length=40, help_text="A customer partner's code.")
    order = serializers.IntegerField(required=False, min_value=1, help_text="One order's shipments (its id).")


class PredictionSerializer(serializers.ModelSerializer):
    shipment = serializers.CharField(source="shipment.number")
    tracking_number = serializers.CharField(source="shipment.tracking_number")
    carrier = serializers.CharField(source="shipment.carrier.code", default=None)
    reasons = serializers.ListField(child=serializers.CharField())

    class Meta:
        model = Prediction
        fields = [
            "shipment",
            "tracking_number",
            "carrier",
            "stage",
            "basis",
            "p10",
            "p50",
            "p90",
            "late_probability",
            "promised_at",
            "carrier_estimate_at",
            "deliveries",
            "reasons",
            "as_of",
        ]
        read_only_fields = fields

from rest_framework import serializers

from apps.inventory.models import InventoryPosition


class InventoryQuerySerializer(serializers.Serializer):
    sku = serializers.CharField(required=False, max_length=100, help_text="SKUs starting with this (case ignored).")
    warehouse = serializers.CharField(required=False, max_length=40, help_text="A warehouse partner's code.")
    mismatch = serializers.BooleanField(
        required=False, default=False, help_text="Only positions whose on hand and book differ beyond tolerance."
    )


class InventoryPositionSerializer(serializers.ModelSerializer):
    warehouse = serializers.CharField(source="warehouse.code")
    on_hand = serializers.DecimalField(source="quantity", max_digits=14, decimal_places=3, allow_null=True)
    book = serializers.DecimalField(source="book_quantity", max_digits=14, decimal_places=3, allow_null=True)
    difference = serializers.DecimalField(
        max_digits=16, decimal_places=3, allow_null=True, help_text="On hand minus book, when both are known."
    )
    allocated = serializers.DecimalField(
        max_digits=16, decimal_places=3, help_text="Released, unshipped order lines allocated to this warehouse."
    )
    allocated_unassigned = serializers.DecimalField(
        source="unassigned",
        max_digits=16,
        decimal_places=3,
        help_text="Released, unshipped lines of this SKU whose release named no warehouse (all warehouses).",
    )
    atp = serializers.DecimalField(
        max_digits=16, decimal_places=3, allow_null=True, help_text="Available to promise: on hand minus allocated."
    )
    units_differ = serializers.BooleanField(help_text="The SKU is also counted in another unit at this warehouse.")
    mismatch = serializers.BooleanField(help_text="On hand and book differ beyond the tolerance.")
    on_hand_as_of = serializers.DateTimeField(source="as_of", allow_null=True)

    class Meta:
        model = InventoryPosition
        fields = [
            "warehouse",
            "sku",
            "uom",
            "on_hand",
            "book",
            "difference",
            "allocated",
            "allocated_unassigned",
            "atp",
            "units_differ",
            "mismatch",
            "on_hand_as_of",
            "book_as_of",
        ]
        read_only_fields = fields

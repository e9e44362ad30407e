from django.db import migrations, models

# The defaults as they stood when scopes arrived; later changes to the defaults do not rewrite
# what an Integration Admin may have edited since.
DEFAULTS = {
    "erp": ["orders", "invoices", "returns", "book_stock", "freight_settlement"],
    "warehouse": ["fulfilment", "own_inventory", "returns_received"],
    "carrier": ["carried_shipments", "freight_charges"],
    "tms": ["transport_planning", "carried_shipments", "freight_charges", "freight_settlement"],
    "customer": ["own_orders"],
}


def grant_kind_defaults(apps, schema_editor):
    for model_name in ("Channel", "ApiToken"):
        model = apps.get_model("partners", model_name)
        for kind, scopes in DEFAULTS.items():
            model.objects.filter(partner__kind=kind).update(scopes=scopes)


class Migration(migrations.Migration):
    dependencies = [("partners", "0002_channel_expected_cadence")]

    operations = [
        migrations.AlterField(
            model_name="partner",
            name="kind",
            field=models.CharField(
                choices=[
                    ("customer", "Customer"),
                    ("carrier", "Carrier"),
                    ("warehouse", "Warehouse"),
                    ("erp", "ERP"),
                    ("tms", "TMS"),
                    ("shop", "eCommerce shop"),
                ],
                db_index=True,
                max_length=20,
            ),
        ),
        migrations.AddField(
            model_name="apitoken",
            name="scopes",
            field=models.JSONField(
                blank=True,
                default=None,
                null=True,
                help_text="What this token may send: scope names from apps/partners/scopes.py. Left empty when "
                "created, it gets the partner kind's defaults; an empty list allows nothing.",
            ),
        ),
        migrations.AddField(
            model_name="channel",
            name="scopes",
            field=models.JSONField(
                blank=True,
                default=None,
                null=True,
                help_text="What this channel may send: scope names from apps/partners/scopes.py. Left empty when "
                "created, it gets the partner kind's defaults; an empty list allows nothing.",
            ),
        ),
        migrations.RunPython(grant_kind_defaults, migrations.RunPython.noop),
    ]

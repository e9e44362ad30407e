from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("billing", "0003_alter_invoice_options"),
    ]

    operations = [
        migrations.AlterModelOptions(
            name="freightcharge",
            options={
                "ordering": ["posted_at", "id"],
                "permissions": [("view_freight_amounts", "Can see freight charge amounts")],
            },
        ),
        migrations.AlterModelOptions(
            name="invoice",
            options={
                "ordering": ["generated_at", "id"],
                "permissions": [
                    ("release_invoice", "Can release a held invoice"),
                    ("trigger_invoice", "Can invoice an order by hand"),
                    ("view_invoice_amounts", "Can see invoice amounts"),
                ],
            },
        ),
    ]

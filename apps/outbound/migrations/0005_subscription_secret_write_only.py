import apps.outbound.models
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("outbound", "0004_delivery_log_upkeep")]

    operations = [
        migrations.AlterField(
            model_name="subscription",
            name="secret",
            field=models.CharField(
                default=apps.outbound.models.new_secret,
                editable=False,
                help_text="Signs every delivery (HMAC-SHA256, X-Signature).",
                max_length=128,
            ),
        ),
        migrations.AddField(
            model_name="subscription",
            name="secret_rotated_at",
            field=models.DateTimeField(blank=True, editable=False, null=True),
        ),
    ]

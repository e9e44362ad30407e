from django.db import migrations, models


def move_poll_headers(apps, schema_editor):
    """Poll channels kept their headers (carrier API keys) in mapping_overrides, readable in admin."""
    Channel = apps.get_model("partners", "Channel")
    for channel in Channel.objects.filter(format="poll", mapping_overrides__has_key="headers"):
        channel.poll_headers = channel.mapping_overrides.pop("headers")
        channel.save(update_fields=["poll_headers", "mapping_overrides"])


def restore_poll_headers(apps, schema_editor):
    Channel = apps.get_model("partners", "Channel")
    for channel in Channel.objects.filter(format="poll").exclude(poll_headers={}):
        channel.mapping_overrides["headers"] = channel.poll_headers
        channel.save(update_fields=["mapping_overrides"])


class Migration(migrations.Migration):
    dependencies = [("partners", "0003_scopes")]

    operations = [
        migrations.AlterField(
            model_name="channel",
            name="webhook_secret",
            field=models.CharField(
                blank=True,
                editable=False,
                help_text="Shared secret for HMAC-SHA256 webhook signatures (X-Signature over timestamp + '.' + body).",
                max_length=128,
            ),
        ),
        migrations.AddField(
            model_name="channel",
            name="webhook_secret_previous",
            field=models.CharField(
                blank=True, editable=False, help_text="The secret before the last rotation.", max_length=128
            ),
        ),
        migrations.AddField(
            model_name="channel",
            name="webhook_secret_previous_until",
            field=models.DateTimeField(
                blank=True,
                editable=False,
                help_text="Signatures made with the previous secret verify until then.",
                null=True,
            ),
        ),
        migrations.AddField(
            model_name="channel",
            name="webhook_secret_rotated_at",
            field=models.DateTimeField(blank=True, editable=False, null=True),
        ),
        migrations.AddField(
            model_name="channel",
            name="poll_headers",
            field=models.JSONField(
                blank=True,
                default=dict,
                editable=False,
                help_text="HTTP headers a tracking pull sends, such as the carrier's API key.",
            ),
        ),
        migrations.RunPython(move_poll_headers, restore_poll_headers),
    ]

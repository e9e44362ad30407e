from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("ingest", "0006_dead_letter_indexes"),
    ]

    operations = [
        migrations.AddField(
            model_name="inboundmessage",
            name="mapping_version",
            field=models.PositiveIntegerField(
                blank=True,
                help_text="The version of its channel's mapping its latest processing read (empty: no channel, or not processed yet).",
                null=True,
            ),
        ),
    ]

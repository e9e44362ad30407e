from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("ingest", "0004_message_queue")]

    operations = [
        migrations.AlterModelOptions(
            name="inboundmessage",
            options={
                "ordering": ["-received_at", "-id"],
                "permissions": [
                    ("replay_inboundmessage", "Can replay dead letters"),
                    ("post_inboundmessage", "Can send messages on behalf of a partner"),
                ],
            },
        ),
        migrations.AddField(
            model_name="inboundmessage",
            name="scopes",
            field=models.JSONField(
                blank=True,
                null=True,
                help_text="What its sender (token and channel) was allowed to send when it arrived; "
                "empty when the sender was found later, from the channel then.",
            ),
        ),
    ]

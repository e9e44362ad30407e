import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


def record_current_mappings(apps, schema_editor):
    """Each channel's mapping as it stands becomes its version 1, so the history starts from it."""
    Channel = apps.get_model("partners", "Channel")
    ChannelMappingVersion = apps.get_model("partners", "ChannelMappingVersion")
    for channel in Channel.objects.exclude(mapping_overrides={}).only("pk", "mapping_overrides").iterator():
        ChannelMappingVersion.objects.create(
            channel_id=channel.pk,
            number=1,
            mapping=channel.mapping_overrides,
            comment="The mapping as it stood when versions began to be kept.",
        )
        Channel.objects.filter(pk=channel.pk).update(mapping_version=1)


def grant_to_integration_admins(apps, schema_editor):
    """Integration Admins (``manage.py roles``) edit mappings; the group may not exist yet."""
    from django.contrib.auth.management import create_permissions

    config = apps.get_app_config("partners")
    config.models_module = True  # historical app configs have none; create_permissions skips those
    create_permissions(config, verbosity=0, apps=apps)
    config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    permission = Permission.objects.filter(
        codename="change_channel_mapping", content_type__app_label="partners"
    ).first()
    if permission is not None:
        for group in Group.objects.filter(name="Integration Admin"):
            group.permissions.add(permission)


class Migration(migrations.Migration):
    dependencies = [
        ("partners", "0005_channel_signature_scheme_customer"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [
        migrations.AlterModelOptions(
            name="channel",
            options={
                "ordering": ["partner__code", "code"],
                "permissions": [("change_channel_mapping", "Can change channel mappings and preview samples")],
            },
        ),
        migrations.AddField(
            model_name="channel",
            name="mapping_version",
            field=models.PositiveIntegerField(
                default=0,
                editable=False,
                help_text="The number of the mapping's latest saved version (0: never changed since the channel was made).",
            ),
        ),
        migrations.CreateModel(
            name="ChannelMappingVersion",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("number", models.PositiveIntegerField()),
                ("mapping", models.JSONField(blank=True, default=dict)),
                (
                    "changes",
                    models.JSONField(
                        blank=True,
                        default=list,
                        help_text='What changed from the version before: [{"path", "before", "after"}].',
                    ),
                ),
                (
                    "areas",
                    models.JSONField(
                        blank=True,
                        default=list,
                        help_text="Sensitive areas the change touches: references, freight, financial.",
                    ),
                ),
                (
                    "author_name",
                    models.CharField(blank=True, help_text="Kept when the account is deleted.", max_length=150),
                ),
                ("comment", models.CharField(blank=True, max_length=500)),
                (
                    "reverted_to",
                    models.PositiveIntegerField(blank=True, help_text="The version this one restored.", null=True),
                ),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                (
                    "author",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
                (
                    "channel",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="mapping_versions",
                        to="partners.channel",
                    ),
                ),
            ],
            options={
                "ordering": ["channel", "-number"],
                "constraints": [models.UniqueConstraint(fields=("channel", "number"), name="unique_mapping_version")],
            },
        ),
        migrations.RunPython(record_current_mappings, migrations.RunPython.noop),
        migrations.RunPython(grant_to_integration_admins, migrations.RunPython.noop),
    ]

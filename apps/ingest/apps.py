from django.apps import AppConfig


class IngestConfig(AppConfig):
    name = "apps.ingest"
    label = "ingest"
    verbose_name = "Inbound messages"

    def ready(self) -> None:
        from django.db.models.signals import post_delete, post_save

        from apps.ingest.mapping import channel_mapping_problems
        from apps.ingest.webhooks import forget_channels
        from apps.partners.mapping import register_checker
        from apps.partners.models import Channel, Partner

        register_checker(channel_mapping_problems)

        for model in (Channel, Partner):
            post_save.connect(forget_channels, sender=model, dispatch_uid=f"forget-channels-{model.__name__}")
            post_delete.connect(forget_channels, sender=model, dispatch_uid=f"forget-channels-gone-{model.__name__}")

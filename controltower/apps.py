from django.apps import AppConfig


class SiteConfig(AppConfig):
    """The site's own pieces every app may use: the ``__any`` lookup and the fast timestamp
    loader are registered here."""

    name = "controltower"
    verbose_name = "Control Tower"

    def ready(self) -> None:
        from django.db.backends.signals import connection_created

        from controltower import lookups  # noqa: F401  (registers the lookup)
        from controltower.timestamps import use_compiled_timestamps

        connection_created.connect(use_compiled_timestamps, dispatch_uid="use_compiled_timestamps")

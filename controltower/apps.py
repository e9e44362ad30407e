from django.apps import AppConfig


class SiteConfig(AppConfig):
    """The site's own pieces every app may use: the ``__any`` lookup is registered here."""

    name = "controltower"
    verbose_name = "Control Tower"

    def ready(self) -> None:
        from controltower import lookups  # noqa: F401  (registers the lookup)

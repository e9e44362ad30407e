from django.apps import AppConfig


class PartnersConfig(AppConfig):
    name = "apps.partners"
    label = "partners"
    verbose_name = "Partners and channels"

    def ready(self) -> None:
        from django.db.models.signals import post_delete, post_save

        from apps.partners import schema  # noqa: F401 - registers the OpenAPI auth extension
        from apps.partners.models import ApiToken, Partner
        from apps.partners.services import forget_api_tokens

        for model in (ApiToken, Partner):
            post_save.connect(forget_api_tokens, sender=model, dispatch_uid=f"forget-api-tokens-{model.__name__}")
            post_delete.connect(forget_api_tokens, sender=model, dispatch_uid=f"forget-api-tokens-rm-{model.__name__}")

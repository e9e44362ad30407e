from django.apps import AppConfig


class ExceptionsConfig(AppConfig):
    name = "apps.exceptions"
    label = "exceptions"
    verbose_name = "Exceptions and work queues"

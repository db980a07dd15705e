from django.apps import AppConfig


class SecretsConfig(AppConfig):
    name = "secrets_app"
    label = "secrets_app"
    verbose_name = "Secrets, tools and credentials"

    def ready(self) -> None:
        from secrets_app import sync, sync_auth  # noqa: F401  (register the outbox handlers and reconcilers)

from django.apps import AppConfig


class AlertsConfig(AppConfig):
    name = "project.alerts"
    label = "alerts"
    verbose_name = "Detection and response: alerts"

    def ready(self) -> None:
        from project.alerts import senders  # noqa: F401  (registers the notification handler with the outbox)

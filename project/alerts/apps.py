from django.apps import AppConfig


class AlertsConfig(AppConfig):
    name = "project.alerts"
    label = "alerts"
    verbose_name = "Detection and response: alerts"

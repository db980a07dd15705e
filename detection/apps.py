from django.apps import AppConfig


class DetectionConfig(AppConfig):
    name = "detection"
    verbose_name = "Detection and response"

    def ready(self) -> None:
        from detection.guardrails import on_observations_changed
        from project.sync.registry import on_observations_changed as listen

        # The guardrails judge an account again after each discovery, refresh, adoption and reconcile of it.
        listen(on_observations_changed)

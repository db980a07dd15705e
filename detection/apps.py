from django.apps import AppConfig


class DetectionConfig(AppConfig):
    name = "detection"
    verbose_name = "Detection and response"

    def ready(self) -> None:
        from detection.guard import period_starts_of
        from detection.guardrails import on_observations_changed
        from keys.selectors import PERIOD_STARTS
        from project.sync.registry import on_observations_changed as listen

        # The budgets page shows what each environment spent in the credit guard's own period.
        if period_starts_of not in PERIOD_STARTS:
            PERIOD_STARTS.append(period_starts_of)
        # The guardrails judge an account again after each discovery, refresh, adoption and reconcile of it.
        listen(on_observations_changed)

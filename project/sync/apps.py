from django.apps import AppConfig
from django.core import checks


class SyncConfig(AppConfig):
    name = "project.sync"
    label = "sync"
    verbose_name = "Platform sync"

    def ready(self) -> None:
        from project.sync.checks import check_sync_kinds

        checks.register(check_sync_kinds, "sync")

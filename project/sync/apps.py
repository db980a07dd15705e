from django.apps import AppConfig


class SyncConfig(AppConfig):
    name = "project.sync"
    label = "sync"
    verbose_name = "Platform sync"

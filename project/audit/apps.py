from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "project.audit"
    label = "audit"
    verbose_name = "Audit trail"

    def ready(self) -> None:
        from project.audit import stream, tasks  # noqa: F401  (the stream's outbox handler, its periodic sweep)
        from project.logging import install_record_factory

        install_record_factory()

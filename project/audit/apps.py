from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "project.audit"
    label = "audit"
    verbose_name = "Audit trail"

    def ready(self) -> None:
        from project.logging import install_record_factory

        install_record_factory()

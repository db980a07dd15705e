from django.apps import AppConfig


class SecretsConfig(AppConfig):
    name = "secrets_app"
    label = "secrets_app"
    verbose_name = "Secrets, tools and credentials"

    def ready(self) -> None:
        from secrets_app import discovery, sync, sync_auth  # noqa: F401  (register the outbox handlers and reconcilers)
        from workspaces.services.platform_accounts import SYNCED_OBJECT_COUNTERS

        # A workspace whose secrets, tools or auth connections are on its platform account cannot move.
        SYNCED_OBJECT_COUNTERS.append(synced_secrets)
        discovery.register()


def synced_secrets(workspace_id: int) -> dict[str, int]:
    from secrets_app.models import AuthConnection, Secret, Tool

    return {label: model.objects.filter(workspace_id=workspace_id).exclude(remote_id="").count()
            for label, model in (("secrets", Secret), ("tools", Tool), ("auth connections", AuthConnection))}

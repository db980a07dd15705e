from django.apps import AppConfig


class KeysConfig(AppConfig):
    name = "keys"
    verbose_name = "API keys"

    def ready(self) -> None:
        from keys import discovery, sync  # noqa: F401  (registers the api_key handlers)

        discovery.register()
        from keys.services import api_keys_revoke_for_service_account
        from workspaces.services import SERVICE_ACCOUNT_DISABLE_HOOKS

        # Disabling a service account revokes its API keys in the same transaction.
        if api_keys_revoke_for_service_account not in SERVICE_ACCOUNT_DISABLE_HOOKS:
            SERVICE_ACCOUNT_DISABLE_HOOKS.append(api_keys_revoke_for_service_account)
        from workspaces.services.platform_accounts import SYNCED_OBJECT_COUNTERS

        # A workspace whose keys live on its platform account cannot move to another account.
        SYNCED_OBJECT_COUNTERS.append(synced_keys)


def synced_keys(workspace_id: int) -> dict[str, int]:
    from keys.models import ApiKey

    return {"API keys": ApiKey.objects.filter(workspace_id=workspace_id, state__in=ApiKey.LIVE_STATES)
            .exclude(remote_key_id="").count()}

from django.apps import AppConfig


class KeysConfig(AppConfig):
    name = "keys"
    verbose_name = "Access: service accounts, roles and keys"

    def ready(self) -> None:
        self._ready_apikeys()

    def _ready_apikeys(self) -> None:
        from keys import sync_apikeys  # noqa: F401  (registers the service_account and api_key handlers)
        from keys.services_apikeys import api_keys_revoke_for_service_account

        try:
            from keys.services import SERVICE_ACCOUNT_DISABLE_HOOKS
        except ImportError:  # the roles part is not installed: nothing disables accounts yet
            return
        if api_keys_revoke_for_service_account not in SERVICE_ACCOUNT_DISABLE_HOOKS:
            SERVICE_ACCOUNT_DISABLE_HOOKS.append(api_keys_revoke_for_service_account)

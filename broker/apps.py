from django.apps import AppConfig


class BrokerConfig(AppConfig):
    name = "broker"
    verbose_name = "Session broker"

    def ready(self) -> None:
        from broker import sync  # noqa: F401  (registers the token-refresh tool's outbox handler)
        from broker.services.keys import broker_keys_revoke_for_service_account
        from workspaces.services import SERVICE_ACCOUNT_DISABLE_HOOKS

        # Disabling a service account revokes its broker keys in the same transaction.
        if broker_keys_revoke_for_service_account not in SERVICE_ACCOUNT_DISABLE_HOOKS:
            SERVICE_ACCOUNT_DISABLE_HOOKS.append(broker_keys_revoke_for_service_account)

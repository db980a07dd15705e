from django.apps import AppConfig


class BrokerConfig(AppConfig):
    name = "broker"
    verbose_name = "Session broker"

    def ready(self) -> None:
        # Disabling a service account revokes its broker keys in the same transaction.
        from broker.services.keys import broker_keys_revoke_for_service_account
        from keys import services as key_services

        hooks = getattr(key_services, "SERVICE_ACCOUNT_DISABLE_HOOKS", None)
        if hooks is not None and broker_keys_revoke_for_service_account not in hooks:
            hooks.append(broker_keys_revoke_for_service_account)

from django.apps import AppConfig


class WorkspacesConfig(AppConfig):
    name = "workspaces"
    verbose_name = "Access: workspaces, people and roles"

    def ready(self) -> None:
        from project import access
        from workspaces import access as policy
        from workspaces import sync  # noqa: F401  (registers the service_account handlers)

        # project/ imports no app: the ground floor's permission checks ask the policy this app installs.
        access.install(policy)

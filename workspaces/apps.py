from django.apps import AppConfig


class WorkspacesConfig(AppConfig):
    name = "workspaces"
    verbose_name = "Access: workspaces, people and roles"

    def ready(self) -> None:
        from project import access
        from project.platform import client
        from workspaces import access as policy
        from workspaces import discovery, sync  # noqa: F401  (registers the service_account handlers)
        from workspaces.directory import directory

        # project/ imports no app: the ground floor's permission checks ask the policy this app installs, and its
        # platform clients ask this app's directory for each account's URL and key.
        access.install(policy)
        client.install_accounts(directory)
        discovery.register()

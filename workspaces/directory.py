"""The platform accounts as the ground floor sees them (project.platform.client.AccountDirectory).

Installed at start by WorkspacesConfig.ready(). Every read is one small query on an indexed column; the client
layer caches what it gets (a client per account, rechecking the key version every few seconds), and the
workspace-to-account binding is cached here for the same few seconds: a binding changes only when a workspace
without synced objects moves, and a few seconds of the old account cannot touch an object there.
"""

from __future__ import annotations

import threading
import time

from project.platform.client import KEY_RECHECK_SECONDS, AccountCredentials
from project.platform.errors import PlatformError


class WorkspaceAccountDirectory:
    def __init__(self) -> None:
        self._bindings: dict[int, tuple[float, int]] = {}
        self._default: tuple[float, int] | None = None
        self._lock = threading.Lock()

    def default_account_id(self) -> int:
        cached = self._default
        if cached is not None and time.monotonic() - cached[0] < KEY_RECHECK_SECONDS:
            return cached[1]
        from workspaces.services.platform_accounts import default_account

        account_id = default_account().pk
        self._default = (time.monotonic(), account_id)
        return account_id

    def credentials(self, account_id: int | None) -> AccountCredentials:
        from workspaces.models import PlatformAccount

        if account_id is None:
            account_id = self.default_account_id()
        row = PlatformAccount.objects.only("base_url", "api_key", "key_version", "created_at").get(pk=account_id)
        return AccountCredentials(row.pk, row.base_url, row.api_key, (row.key_version, row.created_at))

    def key_version(self, account_id: int) -> tuple | None:
        from workspaces.models import PlatformAccount

        row = PlatformAccount.objects.filter(pk=account_id).values_list("key_version", "created_at").first()
        return tuple(row) if row else None

    def account_of_workspace(self, workspace_id: int | None) -> int | None:
        if workspace_id is None:
            return self.default_account_id()
        now = time.monotonic()
        cached = self._bindings.get(workspace_id)
        if cached is not None and now - cached[0] < KEY_RECHECK_SECONDS:
            return cached[1]
        from workspaces.models import Workspace

        account_id = Workspace.objects.filter(pk=workspace_id).values_list("platform_account_id", flat=True).first()
        if account_id is None:
            return self.default_account_id()
        with self._lock:
            self._bindings[workspace_id] = (now, account_id)
        return account_id

    def accounts_with_workspaces(self) -> dict[int, set[int]]:
        from workspaces.models import PlatformAccount, Workspace

        result: dict[int, set[int]] = {pk: set() for pk in PlatformAccount.objects.values_list("pk", flat=True)}
        for workspace_id, account_id in Workspace.objects.values_list("pk", "platform_account_id"):
            result.setdefault(account_id, set()).add(workspace_id)
        return result

    def workspace_prefixes(self, account_id: int) -> dict[int, str]:
        from workspaces.models import Workspace

        return dict(Workspace.objects.filter(platform_account_id=account_id).values_list("pk", "remote_prefix"))

    def describe_accounts(self) -> list[dict[str, object]]:
        from django.conf import settings
        from django.utils import timezone

        from workspaces.models import PlatformAccount

        now, rows = timezone.now(), []
        for account in PlatformAccount.objects.order_by("name").only(
                "name", "state", "key_set_at", "verified_at", "last_success_at", "last_failure_at"):
            age = (now - account.key_set_at).days if account.key_set_at else None
            rows.append({"name": account.name, "state": account.state, "key_age_days": age,
                         "rotation_due": age is not None and age >= settings.PLATFORM_KEY_ROTATION_DAYS,
                         "last_success_at": account.last_success_at.isoformat() if account.last_success_at else None,
                         "last_failure_at": account.last_failure_at.isoformat() if account.last_failure_at else None})
        return rows

    def forget(self) -> None:
        with self._lock:
            self._bindings.clear()
            self._default = None

    def record_outcome(self, account_id: int, error: PlatformError | None) -> None:
        from workspaces.services.platform_accounts import platform_account_record_outcome

        platform_account_record_outcome(account_id=account_id, error=error)


directory = WorkspaceAccountDirectory()

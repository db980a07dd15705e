"""Which broker keys issued before the vault right existed keep carrying end users' vault tokens.

A key keeps them when the person who issued it holds secrets.manage in its workspace at the upgrade (an
unexpired role assignment whose role has it) or is an active superuser: they could have decided it themselves.
Every other key (issued by someone with keys.issue only, such as a Team lead, by a person since disabled or
deleted, or by Keyward itself) keeps opening sessions, but their webhook answers carry no vault tokens until
someone holding secrets.manage turns the right on from the key's page. The README's security section says so.
"""

from django.db import migrations
from django.utils import timezone


def decide(apps, schema_editor):
    BrokerKey = apps.get_model("broker", "BrokerKey")
    RoleAssignment = apps.get_model("workspaces", "RoleAssignment")
    now = timezone.now()
    holders: set[tuple[int, int]] = set()
    assignments = (RoleAssignment.objects.filter(user__isnull=False, user__is_active=True)
                   .exclude(expires_at__lte=now).values_list("workspace_id", "user_id", "role__permissions"))
    for workspace_id, user_id, permissions in assignments:
        if "secrets.manage" in (permissions or []):
            holders.add((workspace_id, user_id))
    keep = [pk for pk, workspace_id, user_id, superuser, active in
            BrokerKey.objects.filter(created_by__isnull=False)
            .values_list("pk", "workspace_id", "created_by_id", "created_by__is_superuser", "created_by__is_active")
            if active and (superuser or (workspace_id, user_id) in holders)]
    BrokerKey.objects.filter(pk__in=keep).update(carries_vault_tokens=True)


class Migration(migrations.Migration):

    dependencies = [
        ("broker", "0006_broker_key_carries_vault_tokens_session_answered_at"),
        ("workspaces", "0003_platform_account_required"),
    ]

    operations = [migrations.RunPython(decide, migrations.RunPython.noop)]

from django.db import migrations

BUILTIN = {
    "Admin": "Everything in the workspace, including assigning any role",
    "Security admin": "Secrets, keys, incidents, audit and sync; no role assignment",
    "Team lead": "Agents, sessions, key issuing and assigning roles within their own rights",
    "Developer": "Agents and sessions",
    "Viewer": "Read-only",
}


def forwards(apps, schema_editor):
    from keys.permissions import BUILTIN_ROLES

    Role = apps.get_model("keys", "Role")
    for name, perms in BUILTIN_ROLES.items():
        Role.objects.update_or_create(workspace=None, name=name, defaults={
            "permissions": sorted(perms), "is_builtin": True, "description": BUILTIN[name]})


class Migration(migrations.Migration):
    dependencies = [("keys", "0001_initial")]
    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]

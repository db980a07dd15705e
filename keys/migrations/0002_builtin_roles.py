from django.db import migrations


def forwards(apps, schema_editor):
    from workspaces.permissions import builtin_roles_ensure

    builtin_roles_ensure(apps.get_model("keys", "Role"))


class Migration(migrations.Migration):
    dependencies = [("keys", "0001_initial")]
    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('agents', '0004_push_webhook_secrets'),
        ('broker', '0003_workspace_models_moved'),
        ('detection', '0004_alert_moved_to_alerts'),
        ('keys', '0006_access_moved_to_workspaces'),
        ('secrets_app', '0002_workspace_models_moved'),
        ('workspaces', '0001_moved_from_agents_and_keys'),
    ]

    operations = [
        # The tables stay where they are: only Django's picture of which app owns them changes.
        migrations.SeparateDatabaseAndState(
            database_operations=[],
            state_operations=[
                migrations.AlterField(
                    model_name='agent',
                    name='workspace',
                    field=models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='agents', to='workspaces.workspace'),
                ),
                migrations.DeleteModel(
                    name='Environment',
                ),
                migrations.DeleteModel(
                    name='Workspace',
                ),
            ],
        ),
    ]

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('broker', '0003_workspace_models_moved'),
        ('keys', '0005_apikey_suspended_index'),
        ('workspaces', '0001_moved_from_agents_and_keys'),
    ]

    operations = [
        # The tables stay where they are: only Django's picture of which app owns them changes.
        migrations.SeparateDatabaseAndState(
            database_operations=[],
            state_operations=[
                migrations.RemoveField(
                    model_name='roleassignment',
                    name='role',
                ),
                migrations.RemoveField(
                    model_name='roleassignment',
                    name='granted_by',
                ),
                migrations.RemoveField(
                    model_name='roleassignment',
                    name='service_account',
                ),
                migrations.RemoveField(
                    model_name='roleassignment',
                    name='user',
                ),
                migrations.RemoveField(
                    model_name='roleassignment',
                    name='workspace',
                ),
                migrations.RemoveField(
                    model_name='serviceaccount',
                    name='created_by',
                ),
                migrations.RemoveField(
                    model_name='serviceaccount',
                    name='disabled_by',
                ),
                migrations.RemoveField(
                    model_name='serviceaccount',
                    name='workspace',
                ),
                migrations.AlterField(
                    model_name='apikey',
                    name='service_account',
                    field=models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='api_keys', to='workspaces.serviceaccount'),
                ),
                migrations.AlterField(
                    model_name='apikey',
                    name='environment',
                    field=models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='api_keys', to='workspaces.environment'),
                ),
                migrations.AlterField(
                    model_name='apikey',
                    name='workspace',
                    field=models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='api_keys', to='workspaces.workspace'),
                ),
                migrations.AlterField(
                    model_name='keypolicy',
                    name='workspace',
                    field=models.OneToOneField(on_delete=django.db.models.deletion.CASCADE, related_name='key_policy', to='workspaces.workspace'),
                ),
                migrations.DeleteModel(
                    name='Role',
                ),
                migrations.DeleteModel(
                    name='RoleAssignment',
                ),
                migrations.DeleteModel(
                    name='ServiceAccount',
                ),
            ],
        ),
    ]

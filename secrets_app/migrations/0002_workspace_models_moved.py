import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('secrets_app', '0001_initial'),
        ('workspaces', '0001_moved_from_agents_and_keys'),
    ]

    operations = [
        # The tables stay where they are: only Django's picture of which app owns them changes.
        migrations.SeparateDatabaseAndState(
            database_operations=[],
            state_operations=[
                migrations.AlterField(
                    model_name='authconnection',
                    name='workspace',
                    field=models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='auth_connections', to='workspaces.workspace'),
                ),
                migrations.AlterField(
                    model_name='oauthprovider',
                    name='workspace',
                    field=models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='oauth_providers', to='workspaces.workspace'),
                ),
                migrations.AlterField(
                    model_name='secret',
                    name='workspace',
                    field=models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='secrets', to='workspaces.workspace'),
                ),
                migrations.AlterField(
                    model_name='tool',
                    name='workspace',
                    field=models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='tools', to='workspaces.workspace'),
                ),
                migrations.AlterField(
                    model_name='usercredential',
                    name='workspace',
                    field=models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='user_credentials', to='workspaces.workspace'),
                ),
            ],
        ),
    ]

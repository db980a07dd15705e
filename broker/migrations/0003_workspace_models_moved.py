import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('broker', '0002_usage_last_granted'),
        ('workspaces', '0001_moved_from_agents_and_keys'),
    ]

    operations = [
        # The tables stay where they are: only Django's picture of which app owns them changes.
        migrations.SeparateDatabaseAndState(
            database_operations=[],
            state_operations=[
                migrations.AlterField(
                    model_name='brokerkey',
                    name='environment',
                    field=models.ForeignKey(help_text='Sessions are minted for this environment only', on_delete=django.db.models.deletion.PROTECT, related_name='broker_keys', to='workspaces.environment'),
                ),
                migrations.AlterField(
                    model_name='brokerkey',
                    name='service_account',
                    field=models.ForeignKey(help_text='The app backend that holds this key; sessions are audited as it', on_delete=django.db.models.deletion.PROTECT, related_name='broker_keys', to='workspaces.serviceaccount'),
                ),
                migrations.AlterField(
                    model_name='brokerkey',
                    name='workspace',
                    field=models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='broker_keys', to='workspaces.workspace'),
                ),
                migrations.AlterField(
                    model_name='brokersession',
                    name='environment',
                    field=models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='+', to='workspaces.environment'),
                ),
            ],
        ),
    ]

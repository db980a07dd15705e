import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('alerts', '0001_moved_from_detection'),
        ('detection', '0003_alert_created_idx'),
        ('workspaces', '0001_moved_from_agents_and_keys'),
    ]

    operations = [
        # The tables stay where they are: only Django's picture of which app owns them changes.
        migrations.SeparateDatabaseAndState(
            database_operations=[],
            state_operations=[
                migrations.AlterField(
                    model_name='incident',
                    name='alert',
                    field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='incidents', to='alerts.alert'),
                ),
                migrations.AlterField(
                    model_name='detectionpolicy',
                    name='workspace',
                    field=models.OneToOneField(on_delete=django.db.models.deletion.CASCADE, related_name='detection_policy', to='workspaces.workspace'),
                ),
                migrations.AlterField(
                    model_name='incident',
                    name='workspace',
                    field=models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='incidents', to='workspaces.workspace'),
                ),
                migrations.DeleteModel(
                    name='Alert',
                ),
            ],
        ),
    ]

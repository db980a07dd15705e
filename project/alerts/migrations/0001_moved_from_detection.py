import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

# Alerts name their object by model label; these models moved to the workspaces app.
RELABELLED = {"agents.workspace": "workspaces.workspace", "agents.environment": "workspaces.environment",
              "keys.serviceaccount": "workspaces.serviceaccount", "keys.role": "workspaces.role",
              "keys.roleassignment": "workspaces.roleassignment"}


def follow(apps, schema_editor):
    ContentType = apps.get_model("contenttypes", "ContentType")
    if not ContentType.objects.filter(app_label="alerts", model="alert").exists():
        ContentType.objects.filter(app_label="detection", model="alert").update(app_label="alerts")
    Alert = apps.get_model("alerts", "Alert")
    for old, new in RELABELLED.items():
        Alert.objects.filter(object_type=old).update(object_type=new)


def go_back(apps, schema_editor):
    ContentType = apps.get_model("contenttypes", "ContentType")
    ContentType.objects.filter(app_label="alerts", model="alert").update(app_label="detection")
    Alert = apps.get_model("alerts", "Alert")
    for old, new in RELABELLED.items():
        Alert.objects.filter(object_type=new).update(object_type=old)


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        ('detection', '0003_alert_created_idx'),  # made the table
        ('contenttypes', '0002_remove_content_type_name'),
        ('workspaces', '0001_moved_from_agents_and_keys'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        # The tables stay where they are: only Django's picture of which app owns them changes.
        migrations.SeparateDatabaseAndState(
            database_operations=[],
            state_operations=[
                migrations.CreateModel(
                    name='Alert',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('created_at', models.DateTimeField(auto_now_add=True)),
                        ('updated_at', models.DateTimeField(auto_now=True)),
                        ('kind', models.CharField(help_text='The rule that fired, e.g. credential_refresh_failed', max_length=60)),
                        ('severity', models.CharField(choices=[('info', 'Info'), ('low', 'Low'), ('medium', 'Medium'), ('high', 'High'), ('critical', 'Critical')], default='medium', max_length=10)),
                        ('state', models.CharField(choices=[('open', 'Open'), ('acknowledged', 'Acknowledged'), ('resolved', 'Resolved')], default='open', max_length=15)),
                        ('title', models.CharField(max_length=200)),
                        ('details', models.JSONField(blank=True, default=dict, help_text='The figures that triggered the alert')),
                        ('object_type', models.CharField(blank=True, max_length=80)),
                        ('object_id', models.CharField(blank=True, max_length=64)),
                        ('object_repr', models.CharField(blank=True, max_length=200)),
                        ('dedup_key', models.CharField(max_length=200)),
                        ('acknowledged_at', models.DateTimeField(blank=True, null=True)),
                        ('resolved_at', models.DateTimeField(blank=True, null=True)),
                        ('acknowledged_by', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
                        ('resolved_by', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
                        ('workspace', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='alerts', to='workspaces.workspace')),
                    ],
                    options={
                        'db_table': 'detection_alert',
                        'ordering': ['-created_at', '-id'],
                        'indexes': [models.Index(fields=['workspace', 'state', '-created_at'], name='alert_workspace_state_idx'), models.Index(fields=['-created_at', '-id'], name='alert_created_idx')],
                        'constraints': [models.UniqueConstraint(fields=('workspace', 'dedup_key'), name='alert_unique_dedup_key')],
                    },
                ),
            ],
        ),
        migrations.RunPython(follow, go_back),
]

import django.db.models.deletion
from django.db import migrations, models


def follow(apps, schema_editor):
    ContentType = apps.get_model("contenttypes", "ContentType")
    if not ContentType.objects.filter(app_label="keys", model="keyusagehourly").exists():
        ContentType.objects.filter(app_label="detection", model="keyusagehourly").update(app_label="keys")


def go_back(apps, schema_editor):
    ContentType = apps.get_model("contenttypes", "ContentType")
    ContentType.objects.filter(app_label="keys", model="keyusagehourly").update(app_label="detection")


class Migration(migrations.Migration):

    dependencies = [
        ('contenttypes', '0002_remove_content_type_name'),
        ('detection', '0004_alert_moved_to_alerts'),  # made the table (0002) and last touched the app
        ('keys', '0006_access_moved_to_workspaces'),
    ]

    operations = [
        # The table stays where it is: only Django's picture of which app owns it changes.
        migrations.SeparateDatabaseAndState(
            database_operations=[],
            state_operations=[
                migrations.CreateModel(
                    name='KeyUsageHourly',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('hour', models.DateTimeField(help_text='Start of the UTC hour')),
                        ('credits', models.DecimalField(decimal_places=3, default=0, max_digits=18)),
                        ('requests', models.PositiveBigIntegerField(default=0)),
                        ('key', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='usage_hours', to='keys.apikey')),
                    ],
                    options={
                        'db_table': 'detection_keyusagehourly',
                        'verbose_name': 'key usage (hour)',
                        'verbose_name_plural': 'key usage (hours)',
                        'ordering': ['-hour'],
                        'indexes': [models.Index(fields=['hour'], name='keyusagehourly_hour_idx')],
                        'constraints': [models.UniqueConstraint(fields=('key', 'hour'), name='keyusagehourly_unique_key_hour')],
                    },
                ),
            ],
        ),
        migrations.RunPython(follow, go_back),
    ]

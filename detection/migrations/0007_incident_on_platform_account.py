
import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('alerts', '0001_moved_from_detection'),
        ('detection', '0006_concurrency_per_account'),
        ('keys', '0008_keyusagehourly_awaiting_rules'),
        ('secrets_app', '0002_workspace_models_moved'),
        ('workspaces', '0003_platform_account_required'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.RemoveConstraint(
            model_name='incident',
            name='incident_one_subject',
        ),
        migrations.AddField(
            model_name='incident',
            name='platform_account',
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='incidents', to='workspaces.platformaccount'),
        ),
        migrations.AddConstraint(
            model_name='incident',
            constraint=models.CheckConstraint(condition=models.Q(models.Q(('api_key__isnull', True), ('secret__isnull', True)), models.Q(('api_key__isnull', True), ('platform_account__isnull', True)), models.Q(('secret__isnull', True), ('platform_account__isnull', True)), _connector='OR'), name='incident_one_subject'),
        ),
    ]

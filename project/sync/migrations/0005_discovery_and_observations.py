
import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('sync', '0004_drift_account'),
    ]

    operations = [
        migrations.CreateModel(
            name='DiscoveryRun',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('created_at', models.DateTimeField(auto_now_add=True)),
                ('updated_at', models.DateTimeField(auto_now=True)),
                ('account_id', models.BigIntegerField(help_text='workspaces.PlatformAccount')),
                ('purpose', models.CharField(choices=[('discover', 'Discover'), ('refresh', 'Guardrail refresh')], default='discover', max_length=10)),
                ('state', models.CharField(choices=[('queued', 'Queued'), ('running', 'Running'), ('done', 'Done'), ('failed', 'Failed')], default='queued', max_length=8)),
                ('requested_by', models.CharField(default='system', max_length=200)),
                ('counts', models.JSONField(blank=True, default=dict, help_text='objects read per kind')),
                ('unmanaged', models.JSONField(blank=True, default=dict, help_text='objects Keyward does not manage, per kind')),
                ('gone', models.JSONField(blank=True, default=list, help_text='objects observed before and gone since (sample)')),
                ('gone_count', models.PositiveIntegerField(default=0)),
                ('calls', models.PositiveIntegerField(default=0, help_text='platform calls made')),
                ('error', models.TextField(blank=True)),
                ('started_at', models.DateTimeField(default=django.utils.timezone.now)),
                ('finished_at', models.DateTimeField(blank=True, null=True)),
            ],
            options={
                'ordering': ['-started_at', '-id'],
                'indexes': [models.Index(fields=['account_id', 'state'], name='discovery_account_state_idx')],
            },
        ),
        migrations.CreateModel(
            name='Observation',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('created_at', models.DateTimeField(auto_now_add=True)),
                ('updated_at', models.DateTimeField(auto_now=True)),
                ('account_id', models.BigIntegerField(help_text='workspaces.PlatformAccount')),
                ('kind', models.CharField(max_length=40)),
                ('remote_id', models.CharField(max_length=128)),
                ('label', models.CharField(blank=True, max_length=200)),
                ('facts', models.JSONField(blank=True, default=dict)),
                ('object_id', models.CharField(blank=True, max_length=64)),
                ('workspace_id', models.BigIntegerField(blank=True, null=True)),
                ('findings', models.JSONField(blank=True, default=list)),
                ('note', models.CharField(blank=True, max_length=300)),
                ('observed_at', models.DateTimeField(default=django.utils.timezone.now)),
                ('run', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to='sync.discoveryrun')),
            ],
            options={
                'ordering': ['kind', 'label', 'id'],
                'indexes': [models.Index(fields=['account_id', 'kind', 'object_id'], name='observation_account_kind_idx')],
                'constraints': [models.UniqueConstraint(fields=('account_id', 'kind', 'remote_id'), name='observation_unique_remote')],
            },
        ),
    ]

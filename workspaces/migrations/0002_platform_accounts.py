import django.db.models.deletion
import project.fields
from django.db import migrations, models
from django.utils import timezone


def default_account_for_existing_workspaces(apps, schema_editor):
    """The single global key of earlier releases (PLATFORM_API_URL / PLATFORM_API_KEY) becomes the default
    account, and every existing workspace is bound to it. Their objects keep the names they have on the platform
    (<slug>__<name>), so nothing needs renaming and reconcile finds them where they were."""
    from django.conf import settings

    PlatformAccount = apps.get_model("workspaces", "PlatformAccount")
    Workspace = apps.get_model("workspaces", "Workspace")
    account = PlatformAccount.objects.filter(is_default=True).first()
    if account is None:
        key = settings.PLATFORM_API_KEY
        account = PlatformAccount.objects.create(
            name="Default platform account", base_url=settings.PLATFORM_API_URL, api_key=key,
            key_hint=key[-4:] if len(key) >= 12 else "", key_set_at=timezone.now(), is_default=True)
    for workspace in Workspace.objects.filter(platform_account__isnull=True):
        workspace.platform_account = account
        workspace.remote_prefix = f"{workspace.slug}__"
        workspace.save(update_fields=["platform_account", "remote_prefix"])


def unbind(apps, schema_editor):
    apps.get_model("workspaces", "Workspace").objects.update(platform_account=None)


class Migration(migrations.Migration):

    dependencies = [
        ('workspaces', '0001_moved_from_agents_and_keys'),
    ]

    operations = [
        migrations.AddField(
            model_name='workspace',
            name='remote_prefix',
            field=models.CharField(blank=True, editable=False, max_length=70),
        ),
        migrations.CreateModel(
            name='PlatformAccount',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('created_at', models.DateTimeField(auto_now_add=True)),
                ('updated_at', models.DateTimeField(auto_now=True)),
                ('name', models.CharField(max_length=120, unique=True)),
                ('base_url', models.URLField(help_text='e.g. https://api.elevenlabs.io (or a data-residency URL)', max_length=300, verbose_name='API base URL')),
                ('api_key', project.fields.EncryptedTextField(help_text='Write-only: never shown again after saving.', verbose_name='admin key')),
                ('key_hint', models.CharField(blank=True, editable=False, max_length=12)),
                ('key_version', models.PositiveIntegerField(default=1, editable=False)),
                ('key_set_at', models.DateTimeField(blank=True, editable=False, help_text='When Keyward started using this key (its age for rotation)', null=True)),
                ('key_service_account_id', models.CharField(blank=True, editable=False, max_length=128)),
                ('key_remote_id', models.CharField(blank=True, editable=False, max_length=128, verbose_name='platform key id')),
                ('key_permissions', models.JSONField(blank=True, editable=False, help_text="The key's permissions as the platform lists them (null: not listed)", null=True)),
                ('previous_api_key', project.fields.EncryptedTextField(blank=True, default=None, editable=False, null=True)),
                ('previous_key_hint', models.CharField(blank=True, editable=False, max_length=12)),
                ('previous_key_remote_id', models.CharField(blank=True, editable=False, max_length=128)),
                ('previous_key_service_account_id', models.CharField(blank=True, editable=False, max_length=128)),
                ('overlap_until', models.DateTimeField(blank=True, editable=False, null=True)),
                ('previous_key_usage', models.JSONField(blank=True, default=dict, editable=False)),
                ('rotation_uuid', models.UUIDField(blank=True, editable=False, null=True)),
                ('state', models.CharField(choices=[('unverified', 'Not verified yet'), ('verified', 'Verified'), ('failing', 'Failing')], default='unverified', editable=False, max_length=12)),
                ('verified_at', models.DateTimeField(blank=True, editable=False, null=True)),
                ('last_success_at', models.DateTimeField(blank=True, editable=False, null=True)),
                ('last_failure_at', models.DateTimeField(blank=True, editable=False, null=True)),
                ('last_failure', models.CharField(blank=True, editable=False, help_text="The platform's reason, redacted", max_length=300)),
                ('platform_info', models.JSONField(blank=True, default=dict, editable=False, help_text='What the platform says of the account (plan), where it says it')),
                ('is_default', models.BooleanField(default=False, editable=False, help_text='Made from PLATFORM_API_URL / PLATFORM_API_KEY')),
            ],
            options={
                'ordering': ['name'],
                'constraints': [models.UniqueConstraint(condition=models.Q(('is_default', True)), fields=('is_default',), name='platform_account_one_default')],
            },
        ),
        migrations.AddField(
            model_name='workspace',
            name='platform_account',
            field=models.ForeignKey(null=True, on_delete=django.db.models.deletion.PROTECT, related_name='workspaces', to='workspaces.platformaccount'),
        ),
        migrations.RunPython(default_account_for_existing_workspaces, unbind),
]

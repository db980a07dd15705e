import django.core.validators
import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

MOVED = {"workspace": "agents", "environment": "agents", "serviceaccount": "keys", "role": "keys",
         "roleassignment": "keys"}


def content_types_follow(apps, schema_editor):
    """Rows that point at a moved model by content type keep pointing at it (a fresh database has none yet)."""
    ContentType = apps.get_model("contenttypes", "ContentType")
    for model, old_app in MOVED.items():
        if not ContentType.objects.filter(app_label="workspaces", model=model).exists():
            ContentType.objects.filter(app_label=old_app, model=model).update(app_label="workspaces")


def content_types_return(apps, schema_editor):
    ContentType = apps.get_model("contenttypes", "ContentType")
    for model, old_app in MOVED.items():
        ContentType.objects.filter(app_label="workspaces", model=model).update(app_label=old_app)


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        # The tables were made by these apps' migrations.
        ('agents', '0004_push_webhook_secrets'),
        ('keys', '0005_apikey_suspended_index'),
        ('contenttypes', '0002_remove_content_type_name'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        # The tables stay where they are: only Django's picture of which app owns them changes.
        migrations.SeparateDatabaseAndState(
            database_operations=[],
            state_operations=[
                migrations.CreateModel(
                    name='Role',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('created_at', models.DateTimeField(auto_now_add=True)),
                        ('updated_at', models.DateTimeField(auto_now=True)),
                        ('name', models.CharField(max_length=80)),
                        ('description', models.CharField(blank=True, max_length=300)),
                        ('permissions', models.JSONField(default=list)),
                        ('is_builtin', models.BooleanField(default=False, editable=False)),
                    ],
                    options={
                        'db_table': 'keys_role',
                        'ordering': ['-is_builtin', 'name'],
                    },
                ),
                migrations.CreateModel(
                    name='Workspace',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('created_at', models.DateTimeField(auto_now_add=True)),
                        ('updated_at', models.DateTimeField(auto_now=True)),
                        ('name', models.CharField(max_length=120, unique=True)),
                        ('slug', models.SlugField(max_length=60, unique=True)),
                        ('description', models.TextField(blank=True)),
                    ],
                    options={
                        'db_table': 'agents_workspace',
                        'ordering': ['name'],
                    },
                ),
                migrations.CreateModel(
                    name='ServiceAccount',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('created_at', models.DateTimeField(auto_now_add=True)),
                        ('updated_at', models.DateTimeField(auto_now=True)),
                        ('name', models.CharField(max_length=120)),
                        ('description', models.TextField(blank=True)),
                        ('is_active', models.BooleanField(default=True, editable=False)),
                        ('disabled_at', models.DateTimeField(blank=True, editable=False, null=True)),
                        ('remote_id', models.CharField(blank=True, editable=False, max_length=128, verbose_name='platform service account id')),
                        ('created_by', models.ForeignKey(blank=True, editable=False, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
                        ('disabled_by', models.ForeignKey(blank=True, editable=False, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
                        ('workspace', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='service_accounts', to='workspaces.workspace')),
                    ],
                    options={
                        'db_table': 'keys_serviceaccount',
                        'ordering': ['workspace__name', 'name'],
                    },
                ),
                migrations.CreateModel(
                    name='RoleAssignment',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('created_at', models.DateTimeField(auto_now_add=True)),
                        ('updated_at', models.DateTimeField(auto_now=True)),
                        ('expires_at', models.DateTimeField(blank=True, null=True)),
                        ('granted_by', models.ForeignKey(blank=True, editable=False, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
                        ('role', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='assignments', to='workspaces.role')),
                        ('user', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.CASCADE, related_name='role_assignments', to=settings.AUTH_USER_MODEL)),
                        ('service_account', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.CASCADE, related_name='role_assignments', to='workspaces.serviceaccount')),
                        ('workspace', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='role_assignments', to='workspaces.workspace')),
                    ],
                    options={
                        'db_table': 'keys_roleassignment',
                        'ordering': ['workspace__name', 'role__name'],
                    },
                ),
                migrations.AddField(
                    model_name='role',
                    name='workspace',
                    field=models.ForeignKey(blank=True, help_text='Blank for built-in roles, which every workspace shares', null=True, on_delete=django.db.models.deletion.CASCADE, related_name='roles', to='workspaces.workspace'),
                ),
                migrations.CreateModel(
                    name='Environment',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('created_at', models.DateTimeField(auto_now_add=True)),
                        ('updated_at', models.DateTimeField(auto_now=True)),
                        ('name', models.CharField(max_length=30, validators=[django.core.validators.RegexValidator('^[a-z][a-z0-9-]{0,29}$', 'Use lowercase letters, digits and hyphens, starting with a letter.')])),
                        ('platform_environment', models.CharField(default='production', max_length=60)),
                        ('credit_budget', models.PositiveBigIntegerField(blank=True, help_text='Credits the keys of this environment may spend per period; blank = no budget', null=True)),
                        ('is_production', models.BooleanField(default=False)),
                        ('workspace', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='environments', to='workspaces.workspace')),
                    ],
                    options={
                        'db_table': 'agents_environment',
                        'ordering': ['workspace__name', 'name'],
                    },
                ),
                migrations.AddConstraint(
                    model_name='serviceaccount',
                    constraint=models.UniqueConstraint(fields=('workspace', 'name'), name='service_account_unique_name'),
                ),
                migrations.AddIndex(
                    model_name='roleassignment',
                    index=models.Index(fields=['user', 'workspace'], name='role_assignment_user_idx'),
                ),
                migrations.AddConstraint(
                    model_name='roleassignment',
                    constraint=models.CheckConstraint(condition=models.Q(models.Q(('service_account__isnull', True), ('user__isnull', False)), models.Q(('service_account__isnull', False), ('user__isnull', True)), _connector='OR'), name='role_assignment_one_principal'),
                ),
                migrations.AddConstraint(
                    model_name='roleassignment',
                    constraint=models.UniqueConstraint(condition=models.Q(('user__isnull', False)), fields=('workspace', 'role', 'user'), name='role_assignment_unique_user'),
                ),
                migrations.AddConstraint(
                    model_name='roleassignment',
                    constraint=models.UniqueConstraint(condition=models.Q(('service_account__isnull', False)), fields=('workspace', 'role', 'service_account'), name='role_assignment_unique_service_account'),
                ),
                migrations.AddConstraint(
                    model_name='role',
                    constraint=models.UniqueConstraint(fields=('workspace', 'name'), name='role_unique_name_per_workspace'),
                ),
                migrations.AddConstraint(
                    model_name='role',
                    constraint=models.UniqueConstraint(condition=models.Q(('workspace__isnull', True)), fields=('name',), name='role_unique_builtin_name'),
                ),
                migrations.AddConstraint(
                    model_name='role',
                    constraint=models.CheckConstraint(condition=models.Q(('is_builtin', False), ('workspace__isnull', True), _connector='OR'), name='role_builtin_has_no_workspace'),
                ),
                migrations.AddConstraint(
                    model_name='environment',
                    constraint=models.UniqueConstraint(fields=('workspace', 'name'), name='environment_unique_name_per_workspace'),
                ),
            ],
        ),
        migrations.RunPython(content_types_follow, content_types_return),
]

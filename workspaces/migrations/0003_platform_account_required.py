import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('workspaces', '0002_platform_accounts'),
    ]

    operations = [
        migrations.AlterField(
            model_name='workspace',
            name='platform_account',
            field=models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='workspaces', to='workspaces.platformaccount'),
        ),
    ]


from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('agents', '0005_workspace_moved_to_workspaces'),
    ]

    operations = [
        migrations.AddField(
            model_name='agent',
            name='allow_shareable_link',
            field=models.BooleanField(default=False, help_text="Keep the platform's shareable link (anyone holding it can talk to the agent) open. Off: Keyward closes it on every push.", verbose_name='allow the shareable link'),
        ),
        migrations.AddField(
            model_name='agent',
            name='missing_since',
            field=models.DateTimeField(blank=True, editable=False, null=True),
        ),
        migrations.AddField(
            model_name='agent',
            name='origin',
            field=models.CharField(choices=[('keyward', 'Created in Keyward'), ('adopted', 'Built on the platform, adopted')], default='keyward', editable=False, max_length=10),
        ),
    ]

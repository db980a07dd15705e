
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('detection', '0005_keyusagehourly_moved_to_keys'),
    ]

    operations = [
        migrations.AddField(
            model_name='concurrencysample',
            name='account_id',
            field=models.BigIntegerField(blank=True, null=True),
        ),
        migrations.AddIndex(
            model_name='concurrencysample',
            index=models.Index(fields=['account_id', '-taken_at'], name='concurrency_account_taken_idx'),
        ),
    ]

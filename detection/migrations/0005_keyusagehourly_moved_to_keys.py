from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('detection', '0004_alert_moved_to_alerts'),
        ('keys', '0007_keyusagehourly_moved_from_detection'),
    ]

    operations = [
        # The table stays where it is (keys.KeyUsageHourly keeps its name): only Django's picture changes.
        migrations.SeparateDatabaseAndState(
            database_operations=[],
            state_operations=[
                migrations.DeleteModel(
                    name='KeyUsageHourly',
                ),
            ],
        ),
    ]

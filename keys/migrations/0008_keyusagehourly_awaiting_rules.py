from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('detection', '0005_keyusagehourly_moved_to_keys'),
        ('keys', '0007_keyusagehourly_moved_from_detection'),
    ]

    operations = [
        # The hours already stored were evaluated by the rules when they were ingested: they start cleared.
        migrations.AddField(
            model_name='keyusagehourly',
            name='awaiting_rules',
            field=models.BooleanField(default=False),
            preserve_default=False,
        ),
        # From now on a new row awaits the rules, also when inserted by raw SQL (db_default).
        migrations.AlterField(
            model_name='keyusagehourly',
            name='awaiting_rules',
            field=models.BooleanField(db_default=True, default=True, help_text='New or revised figures the detection rules have not seen yet'),
        ),
        migrations.AddIndex(
            model_name='keyusagehourly',
            index=models.Index(condition=models.Q(('awaiting_rules', True)), fields=['id'], name='keyusagehourly_awaiting_idx'),
        ),
    ]

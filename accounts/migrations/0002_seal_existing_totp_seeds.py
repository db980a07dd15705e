"""Move every existing authenticator's seed out of django-otp's plain-text column into the encrypted
accounts.TOTPSecret, leaving a random decoy in the column. Reversible without loss: going back puts each seed
back into the column."""

from django.db import migrations
from django_otp.util import random_hex


def seal(apps, schema_editor):
    TOTPDevice = apps.get_model("otp_totp", "TOTPDevice")
    TOTPSecret = apps.get_model("accounts", "TOTPSecret")
    sealed = set(TOTPSecret.objects.values_list("device_id", flat=True))
    for device in TOTPDevice.objects.exclude(pk__in=sealed).iterator():
        TOTPSecret.objects.create(device_id=device.pk, key=device.key)
        TOTPDevice.objects.filter(pk=device.pk).update(key=random_hex(20))


def unseal(apps, schema_editor):
    TOTPDevice = apps.get_model("otp_totp", "TOTPDevice")
    TOTPSecret = apps.get_model("accounts", "TOTPSecret")
    for secret in TOTPSecret.objects.iterator():
        TOTPDevice.objects.filter(pk=secret.device_id).update(key=secret.key)
    TOTPSecret.objects.all().delete()


class Migration(migrations.Migration):
    dependencies = [("accounts", "0001_totp_secrets")]

    operations = [migrations.RunPython(seal, unseal)]

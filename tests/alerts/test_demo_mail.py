"""`make run`: the demo workspaces mail their alerts, and the development email backend writes each message as a
file under EMAIL_FILE_PATH (var/mail/ by default), where the README says to look."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command

from project.actors import SYSTEM
from project.alerts import services
from project.alerts.models import NotificationChannel, NotificationRule
from tests.alerts.conftest import deliver
from workspaces.models import Workspace

pytestmark = pytest.mark.django_db


def test_demo_alerts_land_as_files_in_the_mail_folder(platform, settings, tmp_path):
    settings.EMAIL_BACKEND = "django.core.mail.backends.filebased.EmailBackend"
    settings.EMAIL_FILE_PATH = str(tmp_path / "mail")
    call_command("seed_demo", "--quiet", stdout=io.StringIO())
    acme = Workspace.objects.get(slug="acme")
    assert NotificationRule.objects.get(workspace=acme).is_default
    assert NotificationChannel.objects.get(workspace=acme).address_list() == ["security@acme.example"]
    services.alert_raise(actor=SYSTEM, workspace=acme, kind="api_key_idle", title="Key idle for 40 days",
                         dedup_key="demo-idle")
    deliver()
    [written] = list((tmp_path / "mail").iterdir())
    text = written.read_text()
    assert "To: security@acme.example" in text and "Key idle for 40 days" in text
    call_command("seed_demo", "--quiet", stdout=io.StringIO())  # a restart adds nothing
    assert NotificationChannel.objects.filter(workspace=acme).count() == 1


def test_make_run_writes_mail_under_var_mail():
    import runpy

    from django.conf import settings as live

    declared = runpy.run_path(str(live.BASE_DIR / "project" / "settings.py"))
    if declared["DEBUG"]:  # the development default, which make run uses
        assert declared["EMAIL_BACKEND"] == "django.core.mail.backends.filebased.EmailBackend"
        assert declared["EMAIL_FILE_PATH"] == str(live.BASE_DIR / "var" / "mail")

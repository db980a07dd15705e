from __future__ import annotations

import base64
import logging

import pytest
from django.test import Client
from django_otp.plugins.otp_static.models import StaticToken

from accounts.models import SealedTOTPDevice
from project.audit.models import AuditEvent
from tests.accounts.conftest import CONFIRM_URL, SETUP_URL, STATUS_URL, VERIFY_URL, code_for, password_sign_in

pytestmark = pytest.mark.django_db


def test_no_key_or_recovery_code_in_audit_rows_logs_or_later_pages(staff, otp_required, caplog):
    caplog.set_level(logging.DEBUG)
    client = Client()
    password_sign_in(client, staff.username)
    client.post(SETUP_URL)
    device = SealedTOTPDevice.objects.get(user=staff)
    seed = device.sealed_secret.key
    secrets = {seed, base64.b32encode(device.bin_key).decode()}
    client.post(CONFIRM_URL, {"code": "000000" if code_for(device) != "000000" else "111111"})  # a failure too
    device.throttling_failure_count = 0
    device.throttling_failure_timestamp = None
    device.save()
    client.post(CONFIRM_URL, {"code": code_for(device)})
    first_codes = set(StaticToken.objects.filter(device__user=staff).values_list("token", flat=True))
    client.post("/admin/two-factor/recovery-codes/")
    codes = first_codes | set(StaticToken.objects.filter(device__user=staff).values_list("token", flat=True))
    assert len(codes) == 20
    client.post("/admin/logout/")

    again = Client()
    password_sign_in(again, staff.username)
    again.post(VERIFY_URL, {"code": sorted(codes - first_codes)[0]})
    later_pages = [again.get(url).content.decode() for url in (STATUS_URL, "/admin/", "/admin/audit/auditevent/")]

    audit_text = " ".join(str(row) for row in AuditEvent.objects.values())
    assert AuditEvent.objects.filter(actor_user=staff).count() >= 5
    for value in secrets | codes:
        assert value not in audit_text
        assert value.lower() not in caplog.text.lower()
        assert all(value not in html for html in later_pages)

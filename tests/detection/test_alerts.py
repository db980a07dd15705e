import pytest
from django.core.exceptions import PermissionDenied
from django.urls import reverse

from project.actors import SYSTEM
from project.alerts import services as alert_services
from project.alerts.models import Alert
from project.audit.models import AuditEvent
from tests.conftest import login

pytestmark = pytest.mark.django_db


def _raise(workspace, key="k1"):
    return alert_services.alert_raise(actor=SYSTEM, workspace=workspace, kind="test_rule", title="Something odd",
                                      dedup_key=key,
                                severity=Alert.Severity.HIGH, details={"credits": 120, "baseline": 10})


def test_same_window_raises_one_alert(workspace):
    first, created = _raise(workspace)
    again, created_again = _raise(workspace)
    assert created and not created_again and first.pk == again.pk
    assert Alert.objects.count() == 1
    assert AuditEvent.objects.filter(action="alert.raise").count() == 1


def test_acknowledge_then_resolve_records_who_and_when(workspace, owner):
    alert, _ = _raise(workspace)
    alert_services.alert_acknowledge(actor=owner, alert=alert)
    alert = alert_services.alert_resolve(actor=owner, alert=alert)
    assert alert.state == "resolved" and alert.resolved_by == owner and alert.acknowledged_by == owner
    with pytest.raises(ValueError):
        alert_services.alert_resolve(actor=owner, alert=alert)


def test_member_without_incidents_manage_cannot_resolve(workspace, member, outsider):
    alert, _ = _raise(workspace)
    for actor in (member, outsider):
        with pytest.raises(PermissionDenied):
            alert_services.alert_resolve(actor=actor, alert=alert)
    assert Alert.objects.get().state == "open"


def test_alert_list_is_scoped_and_actions_check_rights(workspace, owner, outsider):
    alert, _ = _raise(workspace)
    url = reverse("admin:alerts_alert_changelist")
    assert "Something odd" in login(owner).get(url).content.decode()
    assert "Something odd" not in login(outsider).get(url).content.decode()
    login(outsider).post(url, {"action": "resolve", "_selected_action": [alert.pk]})
    assert Alert.objects.get().state == "open"
    login(owner).post(url, {"action": "resolve", "_selected_action": [alert.pk]})
    assert Alert.objects.get().state == "resolved"

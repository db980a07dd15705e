import pytest

from project import health

pytestmark = pytest.mark.django_db


def test_health_is_ok_when_every_part_answers(client, platform, monkeypatch):
    monkeypatch.setitem(health.CHECKS, "broker", lambda: None)
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json()["checks"]["platform"]["ok"] is True
    assert response.json()["checks"]["database"]["ok"] is True


def test_health_reports_a_dead_platform_without_details(client, platform, emulator, monkeypatch):
    monkeypatch.setitem(health.CHECKS, "broker", lambda: None)
    emulator.set_faults(error_rate=1.0, error_status=503)
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["checks"]["platform"] == {"ok": False, "error": "Unavailable",
                                                     "ms": response.json()["checks"]["platform"]["ms"]}


def test_health_reports_a_dead_broker(client, platform, settings):
    from project.celery import app

    old = app.conf.broker_url
    app.conf.broker_url = "redis://127.0.0.1:1/0"
    try:
        response = client.get("/healthz")
    finally:
        app.conf.broker_url = old
    assert response.status_code == 503
    assert response.json()["checks"]["broker"]["ok"] is False
    assert "127.0.0.1:1" not in response.content.decode()

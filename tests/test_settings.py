"""Production mode refuses weak or missing secrets, naming the variable at fault."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
STRONG_SECRET = "x9$Kq2!vLw8#Rt5^Zp3&Mn7*Bc4(Hd6)Jf1_Gs0+Ye-Ua=Io;Pe" * 2
STRONG_FERNET = "q1m2Xb0Tq0y7WJ3k5Yv3n8uJc9x4Ue1pZr6sTg2hL0o="


def _load(**env_overrides: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in {"SECRET_KEY", "FIELD_ENCRYPTION_KEY", "ALLOWED_HOSTS",
                                                           "DEBUG", "PLATFORM_API_KEY", "PLATFORM_API_URL"}}
    env.update(env_overrides)
    env["DJANGO_SETTINGS_MODULE"] = "project.settings"
    return subprocess.run([sys.executable, "-c", "import django; django.setup(); print('started')"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


def _production(**overrides: str) -> dict[str, str]:
    env = {"DEBUG": "false", "SECRET_KEY": STRONG_SECRET, "FIELD_ENCRYPTION_KEY": STRONG_FERNET,
           "ALLOWED_HOSTS": "keyward.example.com"}
    env.update(overrides)
    return env


def test_production_starts_with_strong_settings():
    result = _load(**_production())
    assert result.returncode == 0, result.stderr
    assert "started" in result.stdout


@pytest.mark.parametrize("overrides,variable", [
    ({"SECRET_KEY": ""}, "SECRET_KEY"),
    ({"SECRET_KEY": "short"}, "SECRET_KEY"),
    ({"SECRET_KEY": "a" * 60}, "SECRET_KEY"),
    ({"FIELD_ENCRYPTION_KEY": ""}, "FIELD_ENCRYPTION_KEY"),
    ({"FIELD_ENCRYPTION_KEY": "not-a-key"}, "FIELD_ENCRYPTION_KEY"),
    ({"FIELD_ENCRYPTION_KEY": "ZGV2LW9ubHkta2V5d2FyZC1maWVsZC1lbmMta2V5ISE="}, "FIELD_ENCRYPTION_KEY"),
    ({"ALLOWED_HOSTS": ""}, "ALLOWED_HOSTS"),
    ({"ALLOWED_HOSTS": "*"}, "ALLOWED_HOSTS"),
])
def test_production_refuses_weak_or_missing_secret(overrides, variable):
    result = _load(**_production(**overrides))
    assert result.returncode != 0
    assert variable in result.stderr and "ImproperlyConfigured" in result.stderr


def test_bad_number_names_the_variable():
    result = _load(SYNC_MAX_ATTEMPTS="many")
    assert result.returncode != 0 and "SYNC_MAX_ATTEMPTS" in result.stderr


def test_development_defaults_start():
    result = _load()
    assert result.returncode == 0, result.stderr


def test_check_deploy_passes_without_warnings_in_production():
    env = {k: v for k, v in os.environ.items() if k not in {"DEBUG", "SECRET_KEY", "FIELD_ENCRYPTION_KEY",
                                                           "ALLOWED_HOSTS"}}
    env.update(_production(), DJANGO_SETTINGS_MODULE="project.settings")
    result = subprocess.run([sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_production_settings_harden_cookies_and_headers():
    code = ("import django; django.setup(); from django.conf import settings as s; "
            "print(s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, s.SECURE_HSTS_SECONDS >= 31536000, "
            "s.SECURE_SSL_REDIRECT, s.X_FRAME_OPTIONS, "
            "'accounts.middleware.SlidingSessionMiddleware' in s.MIDDLEWARE and s.SESSION_REFRESH_SECONDS <= 60, "
            "s.SESSION_COOKIE_AGE <= 3600, "
            "\"frame-ancestors 'none'\" in s.CONTENT_SECURITY_POLICY)")
    env = {k: v for k, v in os.environ.items() if k not in {"DEBUG", "SECRET_KEY", "FIELD_ENCRYPTION_KEY",
                                                           "ALLOWED_HOSTS"}}
    env.update(_production(), DJANGO_SETTINGS_MODULE="project.settings")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.stdout.split() == ["True", "True", "True", "True", "DENY", "True", "True", "True"], result.stderr


@pytest.mark.django_db
def test_every_admin_page_carries_the_security_headers(admin_client):
    response = admin_client.get("/admin/")
    assert "frame-ancestors 'none'" in response["Content-Security-Policy"]
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"


def test_the_embedded_broker_keeps_every_folder_under_var(settings):
    # kombu's filesystem transport puts its control (broadcast) folder in ./control unless told: make run left
    # an untracked control/ in the checkout (issue 19, item 12).
    from pathlib import Path

    options = settings.CELERY_BROKER_TRANSPORT_OPTIONS
    if not settings.CELERY_BROKER_URL.startswith("filesystem"):
        pytest.skip(f"the tests run with CELERY_BROKER_URL={settings.CELERY_BROKER_URL.split(':')[0]}://")
    var = Path(settings.BASE_DIR) / "var"
    for key in ("data_folder_in", "data_folder_out", "processed_folder", "control_folder"):
        assert Path(options[key]).is_relative_to(var), key

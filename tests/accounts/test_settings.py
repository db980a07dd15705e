"""Sign-in protection settings in production mode (DEBUG=false), loaded in a fresh interpreter."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
PRODUCTION = {"DEBUG": "false", "SECRET_KEY": "x9$Kq2!vLw8#Rt5^Zp3&Mn7*Bc4(Hd6)Jf1_Gs0+Ye-Ua=Io;Pe" * 2,
              "FIELD_ENCRYPTION_KEY": "q1m2Xb0Tq0y7WJ3k5Yv3n8uJc9x4Ue1pZr6sTg2hL0o=",
              "ALLOWED_HOSTS": "keyward.example.com"}
PRINT = ("import django; django.setup(); from django.conf import settings as s; "
         "print(s.OTP_REQUIRED, s.AXES_FAILURE_LIMIT, int(s.AXES_COOLOFF_TIME.total_seconds()), "
         "s.AXES_LOCKOUT_PARAMETERS == [['username', 'ip_address']], "
         "'axes.middleware.AxesMiddleware' == s.MIDDLEWARE[-1], "
         "s.AUTHENTICATION_BACKENDS[0] == 'axes.backends.AxesStandaloneBackend')")
_OURS = {"DEBUG", "SECRET_KEY", "FIELD_ENCRYPTION_KEY", "ALLOWED_HOSTS", "OTP_REQUIRED", "LOGIN_FAILURE_LIMIT",
         "LOGIN_LOCKOUT_MINUTES", "PLATFORM_API_KEY", "PLATFORM_API_URL"}


def _run(**overrides: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in _OURS}
    env.update(overrides, DJANGO_SETTINGS_MODULE="project.settings")
    return subprocess.run([sys.executable, "-c", PRINT], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=60)


def test_production_requires_two_factor_and_locks_after_five_failures_for_thirty_minutes():
    result = _run(**PRODUCTION)
    assert result.stdout.split() == ["True", "5", "1800", "True", "True", "True"], result.stderr


def test_development_leaves_two_factor_optional():
    result = _run()
    assert result.stdout.split()[0] == "False", result.stderr


def test_the_environment_sets_the_limits_and_may_switch_two_factor_off():
    result = _run(**PRODUCTION, OTP_REQUIRED="false", LOGIN_FAILURE_LIMIT="3", LOGIN_LOCKOUT_MINUTES="15")
    assert result.stdout.split()[:3] == ["False", "3", "900"], result.stderr


def test_bad_values_name_the_variable():
    for name, value in (("LOGIN_FAILURE_LIMIT", "many"), ("LOGIN_FAILURE_LIMIT", "0"),
                        ("LOGIN_LOCKOUT_MINUTES", "soon"), ("OTP_REQUIRED", "perhaps")):
        result = _run(**{name: value})
        assert result.returncode != 0 and name in result.stderr, (name, value)

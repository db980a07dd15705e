"""Keyward settings: one module, every knob from the environment (django-environ).

Development defaults are safe to run on a laptop; production mode (DEBUG=false) refuses to start with
a missing or weak SECRET_KEY, FIELD_ENCRYPTION_KEY or ALLOWED_HOSTS, naming the variable at fault.
"""

from __future__ import annotations

import base64
import binascii
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
env.read_env(BASE_DIR / ".env", overwrite=False)

DEV_SECRET_KEY = "dev-insecure-keyward-secret-key-change-me-in-production-0123456789"
# A fixed development Fernet key: data encrypted with it is worthless outside a laptop, and production
# mode refuses it below.
DEV_FIELD_ENCRYPTION_KEY = "ZGV2LW9ubHkta2V5d2FyZC1maWVsZC1lbmMta2V5ISE="


def _env_bool(name: str, default: bool) -> bool:
    try:
        return env.bool(name, default=default)
    except Exception as exc:  # environ raises ValueError subclasses with unclear text
        raise ImproperlyConfigured(f"{name} must be true or false") from exc


def _env_int(name: str, default: int) -> int:
    try:
        return env.int(name, default=default)
    except (ValueError, TypeError) as exc:
        raise ImproperlyConfigured(f"{name} must be an integer") from exc


def _env_float(name: str, default: float) -> float:
    try:
        return env.float(name, default=default)
    except (ValueError, TypeError) as exc:
        raise ImproperlyConfigured(f"{name} must be a number") from exc


DEBUG = _env_bool("DEBUG", True)
PRODUCTION = not DEBUG

SECRET_KEY = env.str("SECRET_KEY", default=DEV_SECRET_KEY)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "testserver"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

# FIELD_ENCRYPTION_KEY holds one or more Fernet keys separated by commas: the first encrypts, all decrypt
# (see the README's key rotation procedure).
_raw_field_keys = env.str("FIELD_ENCRYPTION_KEY", default=DEV_FIELD_ENCRYPTION_KEY)
FIELD_ENCRYPTION_KEY = [k.strip() for k in _raw_field_keys.split(",") if k.strip()]


def _check_fernet_key(name: str, key: str) -> None:
    try:
        raw = base64.urlsafe_b64decode(key.encode())
    except (binascii.Error, ValueError) as exc:
        raise ImproperlyConfigured(f"{name} contains a key that is not url-safe base64") from exc
    if len(raw) != 32:
        raise ImproperlyConfigured(f"{name} keys must be 32 bytes, url-safe base64 encoded (Fernet keys)")


if not FIELD_ENCRYPTION_KEY:
    raise ImproperlyConfigured("FIELD_ENCRYPTION_KEY must hold at least one key")
for _key in FIELD_ENCRYPTION_KEY:
    _check_fernet_key("FIELD_ENCRYPTION_KEY", _key)

if PRODUCTION:
    if SECRET_KEY == DEV_SECRET_KEY or len(SECRET_KEY) < 50 or len(set(SECRET_KEY)) < 5:
        raise ImproperlyConfigured("SECRET_KEY is missing or weak: production needs 50+ random characters")
    if DEV_FIELD_ENCRYPTION_KEY in FIELD_ENCRYPTION_KEY:
        raise ImproperlyConfigured("FIELD_ENCRYPTION_KEY is the development key: generate one for production")
    if not ALLOWED_HOSTS or "*" in ALLOWED_HOSTS:
        raise ImproperlyConfigured("ALLOWED_HOSTS must list this deployment's host names in production")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "encrypted_model_fields",
    "project.platform",
    "project.audit",
    "project.sync",
    "agents",
    "keys",
    "detection",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "project.audit.middleware.RequestContextMiddleware",
    "project.security.ContentSecurityPolicyMiddleware",
]

ROOT_URLCONF = "project.urls"
WSGI_APPLICATION = "project.wsgi.application"
ASGI_APPLICATION = "project.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'var' / 'keyward.sqlite3'}")}
DATABASES["default"].setdefault("ATOMIC_REQUESTS", False)
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The worker and the web server share the file: wait for a lock instead of failing at once.
    DATABASES["default"].setdefault("OPTIONS", {})
    DATABASES["default"]["OPTIONS"].setdefault("timeout", 20)
    DATABASES["default"]["OPTIONS"].setdefault("transaction_mode", "IMMEDIATE")
    DATABASES["default"]["OPTIONS"].setdefault(
        "init_command", "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
    )
DATABASES["default"]["TEST"] = {"NAME": env.str("TEST_DATABASE_NAME", default=None)} if env.str(
    "TEST_DATABASE_NAME", default=None
) else {}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 12}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "var" / "static"

LOGIN_URL = "admin:login"

# --- Platform ---------------------------------------------------------------------------------------
PLATFORM_API_URL = env.str("PLATFORM_API_URL", default="http://127.0.0.1:8765")
PLATFORM_API_KEY = env.str("PLATFORM_API_KEY", default="emulator-dev-key")
PLATFORM_TIMEOUT = _env_float("PLATFORM_TIMEOUT", 10.0)
SIGNED_URL_TTL_SECONDS = _env_int("SIGNED_URL_TTL_SECONDS", 15 * 60)
if PRODUCTION and PLATFORM_API_KEY == "emulator-dev-key" and "127.0.0.1" not in PLATFORM_API_URL:
    raise ImproperlyConfigured("PLATFORM_API_KEY must be set when PLATFORM_API_URL is a real platform")

# --- Celery and the outbox --------------------------------------------------------------------------
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="filesystem://")
_broker_dir = Path(env.str("CELERY_FILESYSTEM_BROKER_DIR", default=str(BASE_DIR / "var" / "broker")))
if CELERY_BROKER_URL.startswith("filesystem"):
    (_broker_dir / "processed").mkdir(parents=True, exist_ok=True)
CELERY_BROKER_TRANSPORT_OPTIONS: dict = (
    {"data_folder_in": str(_broker_dir), "data_folder_out": str(_broker_dir),
     "processed_folder": str(_broker_dir / "processed"), "store_processed": False}
    if CELERY_BROKER_URL.startswith("filesystem")
    else {"visibility_timeout": _env_int("CELERY_VISIBILITY_TIMEOUT", 600)}
)
CELERY_TASK_ALWAYS_EAGER = _env_bool("CELERY_TASK_ALWAYS_EAGER", False)
SYNC_DRAIN_INTERVAL_SECONDS = _env_float("SYNC_DRAIN_INTERVAL_SECONDS", 10.0)
SYNC_MAX_ATTEMPTS = _env_int("SYNC_MAX_ATTEMPTS", 8)
SYNC_BACKOFF_BASE_SECONDS = _env_float("SYNC_BACKOFF_BASE_SECONDS", 2.0)
SYNC_BACKOFF_MAX_SECONDS = _env_float("SYNC_BACKOFF_MAX_SECONDS", 3600.0)
SYNC_LEASE_SECONDS = _env_int("SYNC_LEASE_SECONDS", 120)
RECONCILE_INTERVAL_SECONDS = _env_float("RECONCILE_INTERVAL_SECONDS", 900.0)

# --- Logging: every handler passes through the redaction filter -----------------------------------
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"redact": {"()": "project.logging.RedactingFilter"}},
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["redact"]},
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {"httpx": {"level": "WARNING"}, "httpcore": {"level": "WARNING"}},
}

if PRODUCTION:
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_SSL_REDIRECT = _env_bool("SECURE_SSL_REDIRECT", True)
    SECURE_HSTS_SECONDS = _env_int("SECURE_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_HTTPONLY = True
# Sessions end after this many seconds without a request (each request renews the cookie).
SESSION_COOKIE_AGE = _env_int("SESSION_IDLE_TIMEOUT", 30 * 60)
SESSION_SAVE_EVERY_REQUEST = True
SESSION_EXPIRE_AT_BROWSER_CLOSE = True
CSRF_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
CONTENT_SECURITY_POLICY = env.str(
    "CONTENT_SECURITY_POLICY",
    default="default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; "
    "frame-ancestors 'none'",
)

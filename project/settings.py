"""Keyward settings: one module, every knob from the environment (django-environ).

Development defaults are safe to run on a laptop; production mode (DEBUG=false) refuses to start with
a missing or weak SECRET_KEY, FIELD_ENCRYPTION_KEY or ALLOWED_HOSTS, naming the variable at fault.
"""

from __future__ import annotations

import base64
import binascii
from datetime import timedelta
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
    # Django's admin with Keyward's site (two-factor gate, lockout pages): every admin.site is that site.
    "accounts.apps.KeywardAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "encrypted_model_fields",
    "project.platform",
    "project.audit",
    "project.sync",
    "project.alerts",
    "workspaces",
    "agents",
    "keys",
    "secrets_app",
    "detection",
    "broker",
    "axes",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "django_otp.plugins.otp_static",
    "accounts",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "accounts.middleware.SlidingSessionMiddleware",
    "accounts.middleware.VerifiedDeviceMiddleware",  # django-otp's, without a query per request
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "project.audit.middleware.RequestContextMiddleware",
    "project.security.ContentSecurityPolicyMiddleware",
    # Last, as django-axes requires: turns a lockout flagged during sign-in into the lockout page.
    "axes.middleware.AxesMiddleware",
]

# AxesStandaloneBackend refuses locked-out username+address pairs before ModelBackend checks the password.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    # ModelBackend, loading the user's second-factor devices and role permissions with the user (one query).
    "accounts.backends.KeywardModelBackend",
    # Sign-in with the identity provider (OIDC_ISSUER); answers only the provider's callback, never a password.
    "accounts.oidc.KeywardOIDCBackend",
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
            # {% load keyward %}{% may "keys.revoke" obj as can_revoke %}: buttons only for those who may use them.
            "libraries": {"keyward": "project.template_access"},
        },
    },
]

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'var' / 'keyward.sqlite3'}")}
DATABASES["default"].setdefault("ATOMIC_REQUESTS", False)
# Persistent connections: opening a connection costs milliseconds, more than all of a session API request's
# queries (PostgreSQL: TCP, authentication, a backend process; SQLite: the file, the PRAGMAs and Django's
# SQL functions, measured here at ~6 ms), and prepared statements live per connection. Health checks drop a
# connection the server closed before it is reused.
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=300)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
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
# project/formats/en/formats.py: 2026-12-06 15:00 rather than "Dec. 6, 2026, 3 p.m." (no doubled periods).
FORMAT_MODULE_PATH = ["project.formats"]
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "var" / "static"
# The project's own files (static/keyward/admin.css: every style of the admin pages) next to the apps' static folders.
STATICFILES_DIRS = [BASE_DIR / "static"]
# Development serves static files straight from the apps; production serves the collected copy (collectstatic).
WHITENOISE_USE_FINDERS = DEBUG

LOGIN_URL = "admin:login"

# --- Sign-in protection: lockout (django-axes) and two-factor sign-in (django-otp) --------------------
# After LOGIN_FAILURE_LIMIT failed sign-ins (passwords or one-time codes) for one username from one address,
# that pair is refused for LOGIN_LOCKOUT_MINUTES after the last failure, or until an admin resets it.
AXES_FAILURE_LIMIT = _env_int("LOGIN_FAILURE_LIMIT", 5)
LOGIN_LOCKOUT_MINUTES = _env_int("LOGIN_LOCKOUT_MINUTES", 30)
if AXES_FAILURE_LIMIT < 1 or LOGIN_LOCKOUT_MINUTES < 1:
    raise ImproperlyConfigured("LOGIN_FAILURE_LIMIT and LOGIN_LOCKOUT_MINUTES must be at least 1")
AXES_COOLOFF_TIME = timedelta(minutes=LOGIN_LOCKOUT_MINUTES)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_LOCKOUT_CALLABLE = "accounts.views.lockout_response"
AXES_HTTP_RESPONSE_CODE = 429
AXES_ENABLE_ADMIN = False  # accounts/admin.py registers superuser-only pages on the scoped admin base
AXES_RESET_ON_SUCCESS = False  # a correct password must not wipe the count of wrong one-time codes
# Masked in the attempt records axes stores (the password is always masked).
AXES_SENSITIVE_PARAMETERS = ["username", "ip_address", "code", "otp_token"]
# OTP_REQUIRED: every staff session must pass a one-time code; staff without a device enrol first.
# Parsed strictly: a typo must not switch two-factor off in production.
_otp_required = env.str("OTP_REQUIRED", default=str(PRODUCTION)).strip().lower()
if _otp_required not in {"true", "false", "1", "0", "yes", "no", "on", "off"}:
    raise ImproperlyConfigured("OTP_REQUIRED must be true or false")
OTP_REQUIRED = _otp_required in {"true", "1", "yes", "on"}
OTP_TOTP_ISSUER = env.str("OTP_ISSUER", default="Keyward")
OTP_ADMIN_HIDE_SENSITIVE_DATA = True

# --- Sign-in with the company's identity provider (OpenID Connect, accounts/oidc.py) ---------------------
# Off while OIDC_ISSUER is empty. Endpoints come from the issuer's /.well-known/openid-configuration.
OIDC_ISSUER = env.str("OIDC_ISSUER", default="").strip().rstrip("/")
OIDC_RP_CLIENT_ID = env.str("OIDC_CLIENT_ID", default="")
OIDC_RP_CLIENT_SECRET = env.str("OIDC_CLIENT_SECRET", default="")
OIDC_PROVIDER_NAME = env.str("OIDC_PROVIDER_NAME", default="your identity provider")
OIDC_ALLOWED_EMAIL_DOMAINS = [d.strip().lower().lstrip("@") for d in env.list("OIDC_ALLOWED_EMAIL_DOMAINS",
                                                                           default=[]) if d.strip()]
OIDC_GROUPS_CLAIM = env.str("OIDC_GROUPS_CLAIM", default="groups")
# Whether the provider's multi-factor sign-in (an `amr` claim naming a second factor) stands for Keyward's own
# two-factor step. Off: everyone still passes Keyward's authenticator code.
OIDC_MFA_SATISFIES_TWO_FACTOR = _env_bool("OIDC_MFA_SATISFIES_TWO_FACTOR", False)
OIDC_TIMEOUT = _env_float("OIDC_TIMEOUT", 10.0)
if OIDC_ISSUER:
    if not (OIDC_RP_CLIENT_ID and OIDC_RP_CLIENT_SECRET):
        raise ImproperlyConfigured("OIDC_CLIENT_ID and OIDC_CLIENT_SECRET are required when OIDC_ISSUER is set")
    if PRODUCTION and not OIDC_ISSUER.startswith("https://"):
        raise ImproperlyConfigured("OIDC_ISSUER must be an https URL in production")
OIDC_RP_SIGN_ALGO = env.str("OIDC_SIGN_ALGORITHM", default="RS256")
OIDC_RP_SCOPES = "openid email profile"
OIDC_USE_PKCE = True
OIDC_USE_NONCE = True
OIDC_CREATE_USER = True
OIDC_VERIFY_SSL = True
OIDC_AUTHENTICATION_CALLBACK_URL = "oidc_callback"
LOGIN_REDIRECT_URL = "/admin/"
LOGIN_REDIRECT_URL_FAILURE = "/admin/login/?idp=failed"

# --- Platform ---------------------------------------------------------------------------------------
PLATFORM_API_URL = env.str("PLATFORM_API_URL", default="http://127.0.0.1:8765")
PLATFORM_API_KEY = env.str("PLATFORM_API_KEY", default="emulator-dev-key")
# Keyward's own key per platform account: its age before a rotation-due alert, the overlap after a rotation, and
# how long the previous key must stay unused after the overlap before it is revoked.
PLATFORM_KEY_ROTATION_DAYS = env.int("PLATFORM_KEY_ROTATION_DAYS", default=90)
PLATFORM_KEY_OVERLAP_HOURS = env.int("PLATFORM_KEY_OVERLAP_HOURS", default=24)
PLATFORM_KEY_QUIET_HOURS = env.int("PLATFORM_KEY_QUIET_HOURS", default=1)
PLATFORM_ACCOUNT_SWEEP_INTERVAL_SECONDS = env.int("PLATFORM_ACCOUNT_SWEEP_INTERVAL_SECONDS", default=900)
PLATFORM_TIMEOUT = _env_float("PLATFORM_TIMEOUT", 10.0)
SIGNED_URL_TTL_SECONDS = _env_int("SIGNED_URL_TTL_SECONDS", 15 * 60)
if PRODUCTION and PLATFORM_API_KEY == "emulator-dev-key" and "127.0.0.1" not in PLATFORM_API_URL:
    raise ImproperlyConfigured("PLATFORM_API_KEY must be set when PLATFORM_API_URL is a real platform")

# --- Session broker (broker/) ------------------------------------------------------------------------
# BROKER_PUBLIC_URL is where the platform reaches Keyward's conversation-initiation webhook (https in
# production). BROKER_WEBHOOK_KEY holds one or more comma-separated keys (the first signs the per-agent
# webhook secrets Keyward configures on the platform, all verify, so it can rotate); by default it is
# derived from SECRET_KEY, so no webhook secret is ever stored in the database or in plain configuration.
BROKER_PUBLIC_URL = env.str("BROKER_PUBLIC_URL", default="http://127.0.0.1:8000").rstrip("/")
BROKER_WEBHOOK_KEY = [k.strip() for k in env.str("BROKER_WEBHOOK_KEY", default="").split(",") if k.strip()]
# The session API's few fixed statements run as server-side prepared statements on PostgreSQL (broker/rows.py);
# turn off behind a connection pooler that cannot keep them (PgBouncer before 1.21 in transaction mode).
BROKER_PREPARED_STATEMENTS = env.bool("BROKER_PREPARED_STATEMENTS", default=True)
# Conversation/end-user bindings are kept this long after they expire (the webhook refuses them once expired),
# then deleted by the periodic prune, which runs every BROKER_PRUNE_INTERVAL_SECONDS.
BROKER_SESSION_RETENTION_HOURS = _env_int("BROKER_SESSION_RETENTION_HOURS", 24)
BROKER_PRUNE_INTERVAL_SECONDS = _env_float("BROKER_PRUNE_INTERVAL_SECONDS", 3600.0)
# The credential webhook answers a brokered conversation once; with a window, calls within that many seconds of
# the session's opening are answered again (a platform retry), later ones refused.
BROKER_WEBHOOK_ANSWER_WINDOW_SECONDS = _env_int("BROKER_WEBHOOK_ANSWER_WINDOW_SECONDS", 0)
if not 0 <= BROKER_WEBHOOK_ANSWER_WINDOW_SECONDS <= 900:
    raise ImproperlyConfigured("BROKER_WEBHOOK_ANSWER_WINDOW_SECONDS must be between 0 and 900")
if BROKER_SESSION_RETENTION_HOURS < 1 or BROKER_PRUNE_INTERVAL_SECONDS <= 0:
    raise ImproperlyConfigured("BROKER_SESSION_RETENTION_HOURS must be at least 1 and BROKER_PRUNE_INTERVAL_SECONDS "
                               "positive")
if not BROKER_PUBLIC_URL.startswith(("https://", "http://")):
    raise ImproperlyConfigured("BROKER_PUBLIC_URL must be an absolute http(s) URL")
if any(len(k) < 32 for k in BROKER_WEBHOOK_KEY):
    raise ImproperlyConfigured("BROKER_WEBHOOK_KEY keys must be at least 32 characters")

# --- Notifications and the audit stream (project/alerts, project/audit/stream.py) ---------------------
# PUBLIC_URL: where people reach Keyward; alert messages link to PUBLIC_URL + the alert's admin page.
PUBLIC_URL = env.str("PUBLIC_URL", default="http://127.0.0.1:8000").rstrip("/")
if not PUBLIC_URL.startswith(("https://", "http://")):
    raise ImproperlyConfigured("PUBLIC_URL must be an absolute http(s) URL")
# Email notifications use Django's email backend: in debug (make run) a file per message under var/mail/; in
# production SMTP (EMAIL_HOST, EMAIL_PORT, EMAIL_HOST_USER, EMAIL_HOST_PASSWORD, EMAIL_USE_TLS).
EMAIL_BACKEND = env.str("EMAIL_BACKEND", default="django.core.mail.backends.filebased.EmailBackend" if DEBUG
                        else "django.core.mail.backends.smtp.EmailBackend")
EMAIL_FILE_PATH = env.str("EMAIL_FILE_PATH", default=str(BASE_DIR / "var" / "mail"))
EMAIL_HOST = env.str("EMAIL_HOST", default="localhost")
EMAIL_PORT = _env_int("EMAIL_PORT", 25)
EMAIL_HOST_USER = env.str("EMAIL_HOST_USER", default="")
EMAIL_HOST_PASSWORD = env.str("EMAIL_HOST_PASSWORD", default="")
EMAIL_USE_TLS = _env_bool("EMAIL_USE_TLS", False)
EMAIL_TIMEOUT = _env_int("EMAIL_TIMEOUT", 10)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="keyward@localhost")
# PagerDuty's Events API v2 endpoint (a setting so tests and air-gapped proxies can point elsewhere).
PAGERDUTY_EVENTS_URL = env.str("PAGERDUTY_EVENTS_URL", default="https://events.pagerduty.com/v2/enqueue")
# The audit stream: every committed audit event as one JSON object to a signed webhook (https://..., signed with
# AUDIT_STREAM_SECRET, a Standard Webhooks "whsec_..." secret) or to syslog (syslog+tcp://host:port or
# syslog+udp://host:port, RFC 5424). Empty: off. The backlog shows on the audit trail's page.
AUDIT_STREAM_URL = env.str("AUDIT_STREAM_URL", default="")
AUDIT_STREAM_SECRET = env.str("AUDIT_STREAM_SECRET", default="")
AUDIT_STREAM_SWEEP_SECONDS = _env_float("AUDIT_STREAM_SWEEP_SECONDS", 60.0)
if AUDIT_STREAM_URL and not AUDIT_STREAM_URL.startswith(("https://", "http://", "syslog+tcp://", "syslog+udp://")):
    raise ImproperlyConfigured("AUDIT_STREAM_URL must be https://..., syslog+tcp://host:port or syslog+udp://host:port")
if AUDIT_STREAM_URL.startswith("http") and not AUDIT_STREAM_SECRET.startswith("whsec_"):
    raise ImproperlyConfigured("AUDIT_STREAM_SECRET must be a Standard Webhooks secret (whsec_...) when "
                               "AUDIT_STREAM_URL is a webhook")

# --- Celery and the outbox --------------------------------------------------------------------------
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="filesystem://")
_broker_dir = Path(env.str("CELERY_FILESYSTEM_BROKER_DIR", default=str(BASE_DIR / "var" / "broker")))
if CELERY_BROKER_URL.startswith("filesystem"):
    (_broker_dir / "processed").mkdir(parents=True, exist_ok=True)
CELERY_BROKER_TRANSPORT_OPTIONS: dict = (
    {"data_folder_in": str(_broker_dir), "data_folder_out": str(_broker_dir),
     "processed_folder": str(_broker_dir / "processed"), "store_processed": False,
     # Broadcast (control) exchanges: kombu's default is ./control, which litters the checkout.
     "control_folder": str(_broker_dir / "control")}
    if CELERY_BROKER_URL.startswith("filesystem")
    else {"visibility_timeout": _env_int("CELERY_VISIBILITY_TIMEOUT", 600)}
)
CELERY_TASK_ALWAYS_EAGER = _env_bool("CELERY_TASK_ALWAYS_EAGER", False)
# Several deployments (or test runs) can share one broker by using different queue names.
CELERY_TASK_DEFAULT_QUEUE = env.str("CELERY_TASK_DEFAULT_QUEUE", default="celery")
SYNC_DRAIN_INTERVAL_SECONDS = _env_float("SYNC_DRAIN_INTERVAL_SECONDS", 10.0)
SYNC_MAX_ATTEMPTS = _env_int("SYNC_MAX_ATTEMPTS", 8)
SYNC_BACKOFF_BASE_SECONDS = _env_float("SYNC_BACKOFF_BASE_SECONDS", 2.0)
SYNC_BACKOFF_MAX_SECONDS = _env_float("SYNC_BACKOFF_MAX_SECONDS", 3600.0)
SYNC_LEASE_SECONDS = _env_int("SYNC_LEASE_SECONDS", 120)
# A platform account failing every call (503, timeouts) is left alone this long by each worker after five
# failures in a row: its jobs wait without spending attempts, other accounts' jobs go on.
SYNC_ACCOUNT_PAUSE_SECONDS = _env_float("SYNC_ACCOUNT_PAUSE_SECONDS", 30.0)
# Jobs one worker claims at a time, and how long one drain task keeps claiming (below the task's time limit).
SYNC_CLAIM_BATCH = _env_int("SYNC_CLAIM_BATCH", 40)
# Threads per worker process sharing its one HTTP client, so platform calls overlap (keep workers x threads
# below the platform's concurrency limit). SQLite serialises writers, so there extra threads only contend.
SYNC_DRAIN_THREADS = _env_int(
    "SYNC_DRAIN_THREADS", 1 if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3" else 4)
SYNC_DRAIN_TIME_BUDGET_SECONDS = _env_float("SYNC_DRAIN_TIME_BUDGET_SECONDS", 60.0)
if SYNC_LEASE_SECONDS < 1 or SYNC_CLAIM_BATCH < 1 or SYNC_DRAIN_THREADS < 1:
    raise ImproperlyConfigured("SYNC_LEASE_SECONDS, SYNC_CLAIM_BATCH and SYNC_DRAIN_THREADS must be at least 1")
RECONCILE_INTERVAL_SECONDS = _env_float("RECONCILE_INTERVAL_SECONDS", 900.0)
# Done outbox jobs are kept this many days after they finished (an object's newest job stays whatever its age),
# then deleted by the periodic prune, which runs every SYNC_PRUNE_INTERVAL_SECONDS.
SYNC_DONE_RETENTION_DAYS = _env_int("SYNC_DONE_RETENTION_DAYS", 30)
SYNC_PRUNE_INTERVAL_SECONDS = _env_float("SYNC_PRUNE_INTERVAL_SECONDS", 3600.0)
if SYNC_DONE_RETENTION_DAYS < 1 or SYNC_PRUNE_INTERVAL_SECONDS <= 0:
    raise ImproperlyConfigured("SYNC_DONE_RETENTION_DAYS must be at least 1 and SYNC_PRUNE_INTERVAL_SECONDS positive")

# --- API keys (keys/*_apikeys.py) ------------------------------------------------------------------
# A key being issued in a request is left alone this long before the outbox may declare the issue lost
# (and delete whatever the platform made of it); longer than any platform call can take.
API_KEY_ISSUE_GRACE_SECONDS = _env_int("API_KEY_ISSUE_GRACE_SECONDS", 60)
# Usage ingest (keys.services.api_key_usage_ingest, one platform read for the hours, the day totals and "last
# used"): how many past days are re-read each run (late platform data still lands), and the precision of "last
# used" and of the quiet check in seconds (the read asks for buckets fine enough for that and for whole hours).
API_KEY_USAGE_LOOKBACK_DAYS = _env_int("API_KEY_USAGE_LOOKBACK_DAYS", 2)
API_KEY_USAGE_BUCKET_SECONDS = _env_int("API_KEY_USAGE_BUCKET_SECONDS", 3600)
API_KEY_USAGE_INTERVAL_SECONDS = _env_float("API_KEY_USAGE_INTERVAL_SECONDS", 3600.0)
# Expiry, end of rotation overlaps, rotation-due and idle alerts (drift is the sync app's periodic reconcile).
API_KEY_SWEEP_INTERVAL_SECONDS = _env_float("API_KEY_SWEEP_INTERVAL_SECONDS", 900.0)
# The leak check refuses pastes longer than this many characters.
API_KEY_LEAK_CHECK_MAX_CHARS = _env_int("API_KEY_LEAK_CHECK_MAX_CHARS", 2_000_000)
for _name in ("API_KEY_ISSUE_GRACE_SECONDS", "API_KEY_USAGE_LOOKBACK_DAYS", "API_KEY_USAGE_BUCKET_SECONDS",
              "API_KEY_LEAK_CHECK_MAX_CHARS"):
    if globals()[_name] < 1:
        raise ImproperlyConfigured(f"{_name} must be at least 1")
if 86400 % API_KEY_USAGE_BUCKET_SECONDS:
    raise ImproperlyConfigured("API_KEY_USAGE_BUCKET_SECONDS must divide a day (e.g. 900, 3600)")
# Django refuses larger POST bodies before the leak check sees them; leave room for the form around the paste.
DATA_UPLOAD_MAX_MEMORY_SIZE = max(2_621_440, API_KEY_LEAK_CHECK_MAX_CHARS * 3)
# --- Detection (detection/) -------------------------------------------------------------------------------
# Each run, keys' usage ingest (one platform read) stores the hours, the day totals and "last used", then the alert
# rules and the credit guard run (DETECTION_USAGE_INTERVAL_SECONDS paces the one usage ingest; the keys sweep also
# runs it, before ending rotation overlaps).
DETECTION_USAGE_INTERVAL_SECONDS = _env_float("DETECTION_USAGE_INTERVAL_SECONDS", API_KEY_USAGE_INTERVAL_SECONDS)
# A rules pass run on its own (not right after an ingest) re-reads this many past hours.
DETECTION_RULE_WINDOW_HOURS = _env_int("DETECTION_RULE_WINDOW_HOURS", 26)
# Hourly usage rows (keys.KeyUsageHourly) are kept this long (daily totals stay).
DETECTION_HOURLY_RETENTION_DAYS = _env_int("DETECTION_HOURLY_RETENTION_DAYS", 35)
# The platform's concurrency headers are sampled this often (one small usage query); samples are kept this long.
DETECTION_CONCURRENCY_SAMPLE_SECONDS = _env_float("DETECTION_CONCURRENCY_SAMPLE_SECONDS", 60.0)
DETECTION_CONCURRENCY_RETENTION_HOURS = _env_int("DETECTION_CONCURRENCY_RETENTION_HOURS", 24)
for _name in ("DETECTION_RULE_WINDOW_HOURS", "DETECTION_HOURLY_RETENTION_DAYS",
              "DETECTION_CONCURRENCY_RETENTION_HOURS"):
    if globals()[_name] < 1:
        raise ImproperlyConfigured(f"{_name} must be at least 1")
if DETECTION_USAGE_INTERVAL_SECONDS <= 0 or DETECTION_CONCURRENCY_SAMPLE_SECONDS <= 0:
    raise ImproperlyConfigured("DETECTION_USAGE_INTERVAL_SECONDS and DETECTION_CONCURRENCY_SAMPLE_SECONDS must be "
                               "positive")

# Guardrails on the live state: every platform account with workspaces is read again this often (a discovery run
# of purpose "refresh") and judged, so a setting changed on the platform raises an alert within minutes.
GUARDRAIL_INTERVAL_SECONDS = _env_float("GUARDRAIL_INTERVAL_SECONDS", 300.0)
if GUARDRAIL_INTERVAL_SECONDS <= 0:
    raise ImproperlyConfigured("GUARDRAIL_INTERVAL_SECONDS must be positive")

# --- Secrets and the credential vault (secrets_app) ------------------------------------------------
# End users' OAuth tokens expiring within this window are refreshed (by the periodic sweep, which runs every
# VAULT_REFRESH_INTERVAL_SECONDS, and at session start); a failed refresh is retried after
# VAULT_RETRY_FAILED_SECONDS. OAUTH_HTTP_TIMEOUT bounds each call to a provider's token URL.
VAULT_REFRESH_WINDOW_SECONDS = _env_int("VAULT_REFRESH_WINDOW_SECONDS", 600)
VAULT_REFRESH_INTERVAL_SECONDS = _env_float("VAULT_REFRESH_INTERVAL_SECONDS", 300.0)
VAULT_RETRY_FAILED_SECONDS = _env_int("VAULT_RETRY_FAILED_SECONDS", 3600)
OAUTH_HTTP_TIMEOUT = _env_float("OAUTH_HTTP_TIMEOUT", 10.0)
if VAULT_REFRESH_WINDOW_SECONDS < 60 or VAULT_REFRESH_INTERVAL_SECONDS <= 0:
    raise ImproperlyConfigured("VAULT_REFRESH_WINDOW_SECONDS must be at least 60 and VAULT_REFRESH_INTERVAL_SECONDS "
                               "positive")
if VAULT_REFRESH_INTERVAL_SECONDS >= VAULT_REFRESH_WINDOW_SECONDS:
    raise ImproperlyConfigured("VAULT_REFRESH_INTERVAL_SECONDS must be shorter than VAULT_REFRESH_WINDOW_SECONDS, "
                               "or tokens expire between two sweeps")

# --- The beat: every periodic task, here and nowhere else -------------------------------------------
# Each interval is a setting of its own, listed in the README; tests/test_beat_schedule.py checks that every
# entry names a registered task. Run exactly one beat per deployment.
CELERY_BEAT_SCHEDULE = {
    "sync: drain the outbox": {"task": "sync.drain_outbox", "schedule": SYNC_DRAIN_INTERVAL_SECONDS},
    "sync: reconcile with the platform": {"task": "sync.reconcile", "schedule": RECONCILE_INTERVAL_SECONDS},
    "audit: wake the audit stream if events wait": {
        "task": "audit.stream_sweep", "schedule": AUDIT_STREAM_SWEEP_SECONDS},
    "sync: delete done jobs past their retention": {
        "task": "sync.prune_done_jobs", "schedule": SYNC_PRUNE_INTERVAL_SECONDS},
    "secrets_app: refresh end users' vault tokens before they expire": {
        "task": "secrets_app.refresh_credentials", "schedule": VAULT_REFRESH_INTERVAL_SECONDS},
    "detection: usage per key (hourly and daily), alert rules, credit guard": {
        "task": "detection.watch_usage", "schedule": DETECTION_USAGE_INTERVAL_SECONDS},
    "detection: sample the platform's concurrency": {
        "task": "detection.watch_concurrency", "schedule": DETECTION_CONCURRENCY_SAMPLE_SECONDS},
    "sync: read every platform account again for the guardrails": {
        "task": "sync.refresh_observations", "schedule": GUARDRAIL_INTERVAL_SECONDS},
    "keys: expire, retire and flag API keys": {"task": "keys.sweep", "schedule": API_KEY_SWEEP_INTERVAL_SECONDS},
    "broker: delete expired conversation/end-user bindings": {
        "task": "broker.prune_sessions", "schedule": BROKER_PRUNE_INTERVAL_SECONDS},
    "workspaces: platform accounts' keys (end overlaps, rotation due)": {
        "task": "workspaces.sweep_platform_accounts", "schedule": PLATFORM_ACCOUNT_SWEEP_INTERVAL_SECONDS},
}

# Error pages and error e-mails hide POST fields with secret names and anything holding a known secret value.
DEFAULT_EXCEPTION_REPORTER_FILTER = "project.logging.RedactingExceptionReporterFilter"

# --- Logging: every handler passes through the redaction filter -----------------------------------
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
LOG_FORMAT = env.str("LOG_FORMAT", default="plain" if DEBUG else "json")
if LOG_FORMAT not in {"plain", "json"}:
    raise ImproperlyConfigured("LOG_FORMAT must be plain or json")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"redact": {"()": "project.logging.RedactingFilter"},
                "request_id": {"()": "project.logging.RequestIdFilter"}},
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"},
                   "json": {"()": "project.logging.JsonFormatter"}},
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT, "filters": ["request_id", "redact"]},
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
# Sessions end after this many seconds without a request. A signed-in session is renewed at most every
# SESSION_REFRESH_SECONDS (accounts.middleware.SlidingSessionMiddleware), not written on every request.
SESSION_COOKIE_AGE = _env_int("SESSION_IDLE_TIMEOUT", 30 * 60)
SESSION_REFRESH_SECONDS = 60
SESSION_SAVE_EVERY_REQUEST = False
SESSION_EXPIRE_AT_BROWSER_CLOSE = True
CSRF_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
CONTENT_SECURITY_POLICY = env.str(
    "CONTENT_SECURITY_POLICY",
    default="default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; "
    "frame-ancestors 'none'",
)

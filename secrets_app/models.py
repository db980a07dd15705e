"""Workspace secrets, the tools that reference them, auth connections and the per-user credential vault.

Every piece of secret material lives in a fail-closed encrypted field (project.fields): a value no
configured key can read raises instead of turning into its ciphertext. No __str__ here ever includes a
secret value.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

from project.fields import EncryptedTextField
from project.models import TimeStampedModel
from project.outbound import validate_outbound_url
from project.querysets import RestrictedManager
from secrets_app.validators import (
    TOOL_NAME_PATTERN,
    VAULT_PREFIX,
    parse_headers,
    validate_provider_slug,
    validate_secret_name,
    validate_tool_name,
    validate_tool_url,
)
from workspaces.models import Workspace


def _is_https_or_loopback(url: str) -> bool:
    parsed = urlsplit(url or "")
    return parsed.scheme == "https" or (parsed.scheme == "http" and parsed.hostname in {"localhost", "127.0.0.1",
                                                                                         "::1"})


def _require_https(url: str, field: str, what: str) -> None:
    if url and not _is_https_or_loopback(url):
        raise ValidationError({field: f"{what} must use https:// (plain http would send credentials in clear text)."})


class Secret(TimeStampedModel):
    """A workspace secret: a name usable as ``{{ secret__<name> }}`` and an encrypted, write-only value.

    The platform knows it by ``remote_id`` (its secret_id) and by a workspace-qualified name
    (``<workspace slug>__<name>``), because one platform account serves every Keyward workspace.
    """

    workspace = models.ForeignKey(Workspace, on_delete=models.PROTECT, related_name="secrets")
    name = models.CharField(max_length=63, validators=[validate_secret_name],
                            help_text="Referenced in tool headers as {{ secret__NAME }} (this name in place of NAME).")
    description = models.CharField(max_length=300, blank=True)
    value = EncryptedTextField(help_text="Write-only: never shown again after saving.")
    last_changed_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_changed_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                        related_name="+", editable=False)
    remote_id = models.CharField("platform secret id", max_length=128, blank=True, editable=False)
    # An adopted secret (made on the platform, taken over by discovery): the platform never returns a value, so
    # Keyward holds none until someone sets a new one; until then nothing of its value is ever sent.
    value_known = models.BooleanField(default=True, editable=False,
                                      help_text="False: the value is held by the platform only (adopted)")
    # The name the platform knows it by, kept as adopted (it need not follow Keyward's naming); empty: the
    # workspace-qualified name. Cleared when the secret is renamed in Keyward.
    platform_name = models.CharField(max_length=200, blank=True, editable=False)

    objects = RestrictedManager()

    class Meta:
        ordering = ["workspace__name", "name"]
        constraints = [
            models.UniqueConstraint(fields=["workspace", "name"], name="secret_unique_name_per_workspace"),
            models.UniqueConstraint(fields=["remote_id"], condition=~Q(remote_id=""), name="secret_unique_remote_id"),
            models.CheckConstraint(condition=Q(name__regex=r"^[a-z][a-z0-9_]{0,62}$"), name="secret_name_identifier"),
            models.CheckConstraint(condition=~Q(name__startswith=VAULT_PREFIX), name="secret_name_not_vault_prefix"),
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        if self.name and self.name.startswith(VAULT_PREFIX):
            raise ValidationError({"name": f"Names starting with “{VAULT_PREFIX}” are reserved for end users' vault "
                                           "tokens (secret__user_<provider>_token)."})

    @property
    def reference(self) -> str:
        return "{{ secret__" + self.name + " }}"

    @property
    def remote_name(self) -> str:
        """The name on the platform account: the adopted one, else plain when the workspace is alone there,
        ``<slug>__name`` else."""
        return self.platform_name or f"{self.workspace.remote_prefix}{self.name}"


class Tool(TimeStampedModel):
    """A webhook tool: the platform calls ``url`` with ``headers``, some of which reference secrets.

    ``headers`` keeps what the person wrote (``{"Authorization": "{{ secret__crm_token }}"}``); the
    reference index (ToolSecretReference) is rebuilt from it in the same transaction on every save.
    """

    class Method(models.TextChoices):
        GET = "GET", "GET"
        POST = "POST", "POST"
        PUT = "PUT", "PUT"
        PATCH = "PATCH", "PATCH"
        DELETE = "DELETE", "DELETE"

    workspace = models.ForeignKey(Workspace, on_delete=models.PROTECT, related_name="tools")
    name = models.CharField(max_length=64, validators=[validate_tool_name])
    description = models.TextField(
        help_text="What the tool does; the agent's LLM reads this to decide when to call it.")
    url = models.CharField("URL", max_length=2048, validators=[validate_tool_url],
                           help_text="May contain {path_params}.")
    method = models.CharField(max_length=6, choices=Method.choices, default=Method.POST)
    headers = models.JSONField(default=dict, blank=True)
    response_timeout_secs = models.PositiveSmallIntegerField(
        default=20, validators=[MinValueValidator(5), MaxValueValidator(300)])
    remote_id = models.CharField("platform tool id", max_length=128, blank=True, editable=False)
    last_changed_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                        related_name="+", editable=False)

    objects = RestrictedManager()

    class Meta:
        ordering = ["workspace__name", "name"]
        constraints = [
            models.UniqueConstraint(fields=["workspace", "name"], name="tool_unique_name_per_workspace"),
            models.UniqueConstraint(fields=["remote_id"], condition=~Q(remote_id=""), name="tool_unique_remote_id"),
            models.CheckConstraint(condition=Q(name__regex=TOOL_NAME_PATTERN), name="tool_name_platform_rule"),
            models.CheckConstraint(condition=Q(response_timeout_secs__gte=5, response_timeout_secs__lte=300),
                                   name="tool_timeout_range"),
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        try:
            specs = parse_headers(self.headers)
        except ValidationError as exc:
            raise ValidationError({"headers": exc.messages}) from None
        if any(s.kind in ("secret", "vault") for s in specs):
            _require_https(self.url, "url", "A tool that sends a secret")


class ToolSecretReference(models.Model):
    """Tool ``tool`` sends secret ``secret`` in header ``header``. Kept in step with Tool.headers by the
    tool services; PROTECT stops a referenced secret from being deleted underneath a tool."""

    workspace_path = "tool__workspace_id"  # RestrictedQuerySet.restrict() reaches the workspace this way

    tool = models.ForeignKey(Tool, on_delete=models.CASCADE, related_name="secret_references")
    secret = models.ForeignKey(Secret, on_delete=models.PROTECT, related_name="tool_references")
    header = models.CharField(max_length=100)

    objects = RestrictedManager()

    class Meta:
        ordering = ["tool__name", "header"]
        constraints = [
            models.UniqueConstraint(fields=["tool", "header"], name="tool_reference_unique_header"),
        ]
        indexes = [
            # "Which tools use this secret?": the delete refusal and the secret list's "used by" column.
            models.Index(fields=["secret", "tool"], name="tool_reference_secret_idx"),
        ]

    def __str__(self) -> str:
        return f"header {self.header} of tool {self.tool_id} uses secret {self.secret_id}"


class AuthConnection(TimeStampedModel):
    """How a tool authenticates to an external API, one of five kinds. Secret parts are encrypted and
    write-only; fields of other kinds stay empty. Synced to the platform's workspace auth connections under a
    workspace-qualified name (``<workspace slug>__<name>``), like secrets."""

    class Kind(models.TextChoices):
        OAUTH2_CLIENT_CREDENTIALS = "oauth2_client_credentials", "OAuth2 client credentials"
        OAUTH2_JWT = "oauth2_jwt", "OAuth2 JWT bearer"
        BASIC = "basic_auth", "Basic auth"
        BEARER = "bearer_auth", "Bearer token"
        CUSTOM_HEADERS = "custom_header_auth", "Custom headers"

    class Algorithm(models.TextChoices):
        HS256 = "HS256", "HS256"
        HS384 = "HS384", "HS384"
        HS512 = "HS512", "HS512"
        RS256 = "RS256", "RS256"
        RS384 = "RS384", "RS384"
        RS512 = "RS512", "RS512"

    # The plain and secret fields each kind uses; services clear the others.
    KIND_FIELDS: dict[str, tuple[str, ...]] = {
        Kind.OAUTH2_CLIENT_CREDENTIALS: ("client_id", "token_url", "scopes"),
        Kind.OAUTH2_JWT: ("token_url", "algorithm", "claims", "scopes"),
        Kind.BASIC: ("username",),
        Kind.BEARER: (),
        Kind.CUSTOM_HEADERS: ("header_names",),
    }
    KIND_SECRETS: dict[str, tuple[str, ...]] = {
        Kind.OAUTH2_CLIENT_CREDENTIALS: ("client_secret",),
        Kind.OAUTH2_JWT: ("signing_secret",),
        Kind.BASIC: ("password",),
        Kind.BEARER: ("token",),
        Kind.CUSTOM_HEADERS: ("header_values",),
    }
    PLAIN_FIELDS = ("client_id", "token_url", "scopes", "algorithm", "claims", "username", "header_names")
    SECRET_FIELDS = ("client_secret", "signing_secret", "password", "token", "header_values")

    workspace = models.ForeignKey(Workspace, on_delete=models.PROTECT, related_name="auth_connections")
    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=30, choices=Kind.choices)
    provider = models.CharField(max_length=60, blank=True, help_text="Free text, e.g. salesforce or internal-crm.")
    client_id = models.CharField(max_length=300, blank=True)
    token_url = models.URLField("token URL", max_length=2048, blank=True)
    scopes = models.JSONField(default=list, blank=True)
    algorithm = models.CharField(max_length=5, choices=Algorithm.choices, blank=True)
    claims = models.JSONField(default=dict, blank=True, help_text="JWT claims: iss, aud and sub, plus any extra ones.")
    username = models.CharField(max_length=300, blank=True)
    header_names = models.JSONField(default=list, blank=True)
    client_secret = EncryptedTextField(blank=True, default="")
    signing_secret = EncryptedTextField(blank=True, default="")
    password = EncryptedTextField(blank=True, default="")
    token = EncryptedTextField(blank=True, default="")
    # JSON {header name: value}, encrypted as a whole; the names alone are in header_names for display.
    header_values = EncryptedTextField(blank=True, default="")
    last_changed_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                        related_name="+", editable=False)
    remote_id = models.CharField("platform auth connection id", max_length=128, blank=True, editable=False)
    # Adopted from the platform: its credentials were never returned, so Keyward holds none until someone enters
    # them (any save does: the form requires them); until then a push never sends a credential.
    secrets_known = models.BooleanField(default=True, editable=False,
                                        help_text="False: the credentials are held by the platform only (adopted)")
    platform_name = models.CharField(max_length=200, blank=True, editable=False,
                                     help_text="The name on the platform as adopted; empty: the qualified name")

    objects = RestrictedManager()

    class Meta:
        ordering = ["workspace__name", "name"]
        constraints = [
            models.UniqueConstraint(fields=["workspace", "name"], name="auth_connection_unique_name_per_workspace"),
            models.UniqueConstraint(fields=["remote_id"], condition=~Q(remote_id=""),
                                    name="auth_connection_unique_remote_id"),
            models.CheckConstraint(condition=Q(kind__in=["oauth2_client_credentials", "oauth2_jwt", "basic_auth",
                                                         "bearer_auth", "custom_header_auth"]),
                                   name="auth_connection_kind_valid"),
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        _require_https(self.token_url, "token_url", "The token URL")

    @property
    def remote_name(self) -> str:
        """The name on the platform account: the adopted one, else plain when the workspace is alone there,
        ``<slug>__name`` else."""
        return self.platform_name or f"{self.workspace.remote_prefix}{self.name}"


class OAuthProvider(TimeStampedModel):
    """An OAuth authorization server whose end-user tokens Keyward keeps (Google, Slack...): where to
    refresh them and Keyward's client credentials there."""

    workspace = models.ForeignKey(Workspace, on_delete=models.PROTECT, related_name="oauth_providers")
    slug = models.CharField(max_length=40, validators=[validate_provider_slug],
                            help_text="Tokens are injected as secret__user_<slug>_token.")
    name = models.CharField(max_length=100)
    token_url = models.URLField("token URL", max_length=2048)
    client_id = models.CharField(max_length=300)
    client_secret = EncryptedTextField(blank=True, default="", help_text="Write-only.")
    send_client_secret_in_header = models.BooleanField(
        default=False, help_text="Send client id and secret as HTTP Basic auth instead of in the form body.")

    objects = RestrictedManager()

    class Meta:
        verbose_name = "OAuth provider"
        ordering = ["workspace__name", "name"]
        constraints = [
            models.UniqueConstraint(fields=["workspace", "slug"], name="oauth_provider_unique_slug_per_workspace"),
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        # Keyward itself posts to this URL (with end users' refresh tokens): never to an internal address.
        if self.token_url:
            validate_outbound_url(self.token_url, field="token_url", what="The token URL")


class UserCredential(TimeStampedModel):
    """One end user's OAuth tokens at one provider, encrypted; refreshed before expiry by the periodic task.

    ``end_user_id`` is the app's own identifier of its user (not a Keyward login). A failed refresh keeps
    both tokens as they were and marks the row ``refresh_failed``; revoking wipes them.
    """

    class State(models.TextChoices):
        ACTIVE = "active", "Active"
        REFRESH_FAILED = "refresh_failed", "Refresh failed"
        REVOKED = "revoked", "Revoked"

    workspace = models.ForeignKey(Workspace, on_delete=models.PROTECT, related_name="user_credentials")
    provider = models.ForeignKey(OAuthProvider, on_delete=models.PROTECT, related_name="credentials")
    end_user_id = models.CharField("end user", max_length=200)
    scopes = models.JSONField(default=list, blank=True)
    access_token = EncryptedTextField(blank=True, default="")
    refresh_token = EncryptedTextField(blank=True, default="")
    expires_at = models.DateTimeField(null=True, blank=True)
    last_refreshed_at = models.DateTimeField(null=True, blank=True)
    state = models.CharField(max_length=15, choices=State.choices, default=State.ACTIVE)
    last_error = models.CharField(max_length=300, blank=True, help_text="Why the last refresh failed (no token).")
    # A refresh in flight holds this lease, so two workers never spend the same refresh token.
    refresh_lease_until = models.DateTimeField(null=True, blank=True, editable=False)

    objects = RestrictedManager()

    class Meta:
        ordering = ["workspace__name", "provider__name", "end_user_id"]
        constraints = [
            models.UniqueConstraint(fields=["provider", "end_user_id"], name="credential_unique_user_per_provider"),
            models.CheckConstraint(condition=Q(state__in=["active", "refresh_failed", "revoked"]),
                                   name="credential_state_valid"),
        ]
        indexes = [
            # The refresh sweep: credentials not revoked that expire before now + window.
            models.Index(fields=["state", "expires_at"], name="credential_refresh_due_idx"),
            # credential_fresh_tokens(): one end user's credentials in a workspace.
            models.Index(fields=["workspace", "end_user_id"], name="credential_workspace_user_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.end_user_id} @ {self.provider_id and self.provider}"

    def clean(self) -> None:
        if self.provider_id and self.workspace_id and self.provider.workspace_id != self.workspace_id:
            raise ValidationError({"provider": "This provider belongs to another workspace."})

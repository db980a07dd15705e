"""Sign-in with the company's identity provider: OpenID Connect's authorization code flow with PKCE.

Built on mozilla-django-oidc (small, one purpose, maintained by Mozilla, used in production for years; django-allauth
would bring its own account pages, email flows and templates for a single provider). The library runs the flow
(state, nonce, PKCE verifier kept in the session, the code exchanged at the token endpoint, the ID token's
signature checked against the provider's JWKS). Keyward adds what it leaves out:

- endpoints from the issuer's discovery document (`OIDC_ISSUER`), whose `issuer` must be that same URL;
- the ID token's `iss` must be `OIDC_ISSUER` and its `aud` must name `OIDC_CLIENT_ID` (the library checks
  neither), and the userinfo `sub` must be the ID token's;
- who gets in and with which roles: accounts/idp.py (allowed email domains, group → role mappings, superusers
  never);
- the second factor: the session goes through Keyward's authenticator step as after a password, unless
  `OIDC_MFA_SATISFIES_TWO_FACTOR` is on and the ID token's `amr` names a second factor;
- a refused or tampered callback (unknown `state`, a token from another issuer) lands on the sign-in page with
  a plain sentence, logged as one line, never a stack trace.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import jwt
import requests
from django.conf import settings
from django.contrib import auth, messages
from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_not_required
from django.core.exceptions import SuspiciousOperation
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils.decorators import method_decorator
from mozilla_django_oidc.auth import OIDCAuthenticationBackend
from mozilla_django_oidc.views import OIDCAuthenticationCallbackView, OIDCAuthenticationRequestView

from accounts import idp, second_factor

logger = logging.getLogger(__name__)

#: `amr` values (RFC 8176) that name a second factor.
SECOND_FACTOR_AMR = frozenset({"mfa", "otp", "hwk", "swk", "sms", "tel", "sc"})
ID_CLAIMS_ATTR = "_keyward_id_claims"
REFUSAL_SESSION_KEY = "keyward_idp_refusal"
_DISCOVERY_TTL = 300.0
_discovery: dict[str, Any] = {}


def enabled() -> bool:
    return bool(settings.OIDC_ISSUER)


def provider() -> dict[str, Any]:
    """The issuer's discovery document (cached for five minutes); its `issuer` must be OIDC_ISSUER exactly."""
    issuer = settings.OIDC_ISSUER
    cached = _discovery.get(issuer)
    if cached and cached[0] > time.monotonic():
        return cached[1]
    response = requests.get(f"{issuer}/.well-known/openid-configuration", timeout=settings.OIDC_TIMEOUT)
    response.raise_for_status()
    document = response.json()
    if str(document.get("issuer", "")).rstrip("/") != issuer:
        raise SuspiciousOperation("The discovery document names another issuer.")
    _discovery[issuer] = (time.monotonic() + _DISCOVERY_TTL, document)
    return document


def forget_provider() -> None:
    _discovery.clear()


class KeywardOIDCBackend(OIDCAuthenticationBackend):
    """Answers only the provider's callback (called with a nonce); a password sign-in passes it by."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # The library reads every endpoint from settings here; Keyward reads them from discovery, lazily, so a
        # password sign-in (which instantiates every backend) never calls the provider.
        self.UserModel = get_user_model()
        self.OIDC_RP_CLIENT_ID = settings.OIDC_RP_CLIENT_ID
        self.OIDC_RP_CLIENT_SECRET = settings.OIDC_RP_CLIENT_SECRET
        self.OIDC_RP_SIGN_ALGO = settings.OIDC_RP_SIGN_ALGO
        self.OIDC_RP_IDP_SIGN_KEY = None

    def authenticate(self, request: HttpRequest | None, **kwargs: Any) -> Any:
        if request is None or not enabled() or "nonce" not in kwargs:
            return None
        document = provider()
        self.OIDC_OP_TOKEN_ENDPOINT = document["token_endpoint"]
        self.OIDC_OP_USER_ENDPOINT = document["userinfo_endpoint"]
        self.OIDC_OP_JWKS_ENDPOINT = document["jwks_uri"]
        return super().authenticate(request, **kwargs)

    def _verify_jws(self, payload: Any, key: Any) -> dict[str, Any]:
        header = jwt.get_unverified_header(payload)
        if header.get("alg") != self.OIDC_RP_SIGN_ALGO:
            raise SuspiciousOperation("The ID token is signed with another algorithm.")
        try:
            claims = jwt.decode(payload, key, algorithms=[self.OIDC_RP_SIGN_ALGO], audience=self.OIDC_RP_CLIENT_ID,
                                issuer=settings.OIDC_ISSUER, options={"require": ["iss", "aud", "exp", "sub"]})
        except jwt.InvalidIssuerError:
            raise SuspiciousOperation("The ID token comes from another issuer.") from None
        except jwt.InvalidAudienceError:
            raise SuspiciousOperation("The ID token was issued to another client.") from None
        except jwt.PyJWTError as exc:
            raise SuspiciousOperation(f"The ID token is not valid ({type(exc).__name__}).") from None
        return claims

    def get_or_create_user(self, access_token: str, id_token: str, payload: dict[str, Any]) -> Any:
        info = self.get_userinfo(access_token, id_token, payload)
        if str(info.get("sub")) != str(payload.get("sub")):
            raise SuspiciousOperation("The userinfo answer is about someone else.")
        claims = {**info, "sub": payload["sub"]}
        try:
            user = idp.identity_sign_in(issuer=settings.OIDC_ISSUER, claims=claims)
            setattr(user, ID_CLAIMS_ATTR, payload)
            return user
        except idp.SignInRefused as exc:
            self.request.session[REFUSAL_SESSION_KEY] = str(exc)
            logger.info("identity provider sign-in refused: %s", exc)
            return None

    def get_userinfo(self, access_token: str, id_token: str, payload: dict[str, Any]) -> dict[str, Any]:
        response = requests.get(self.OIDC_OP_USER_ENDPOINT, headers={"Authorization": f"Bearer {access_token}"},
                                timeout=settings.OIDC_TIMEOUT)
        response.raise_for_status()
        return response.json()

    def get_token(self, payload: dict[str, Any]) -> dict[str, Any]:
        response = requests.post(self.OIDC_OP_TOKEN_ENDPOINT, data=payload, timeout=settings.OIDC_TIMEOUT)
        if response.status_code != 200:
            raise SuspiciousOperation(f"The identity provider refused the code (HTTP {response.status_code}).")
        return response.json()


def _second_factor_by_provider(claims: dict[str, Any]) -> bool:
    amr = claims.get("amr") or []
    return bool(settings.OIDC_MFA_SATISFIES_TWO_FACTOR and isinstance(amr, list) and SECOND_FACTOR_AMR & set(amr))


@method_decorator(login_not_required, name="dispatch")
class SignInView(OIDCAuthenticationRequestView):
    """Sends the browser to the provider with state, nonce and a PKCE challenge."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super(OIDCAuthenticationRequestView, self).__init__(*args, **kwargs)
        self.OIDC_RP_CLIENT_ID = settings.OIDC_RP_CLIENT_ID

    def get(self, request: HttpRequest) -> HttpResponse:
        if not enabled():
            raise Http404("Sign-in with an identity provider is not set up.")
        try:
            self.OIDC_OP_AUTH_ENDPOINT = provider()["authorization_endpoint"]
        except (requests.RequestException, ValueError, KeyError, SuspiciousOperation) as exc:
            logger.warning("identity provider unreachable: %s", type(exc).__name__)
            messages.error(request, "The identity provider cannot be reached just now; try again in a minute.")
            return HttpResponseRedirect(reverse("admin:login"))
        return super().get(request)


@method_decorator(login_not_required, name="dispatch")
class CallbackView(OIDCAuthenticationCallbackView):
    """The provider's answer: refused or tampered answers go back to the sign-in page with a sentence."""

    def get(self, request: HttpRequest) -> HttpResponse:
        if not enabled():
            raise Http404("Sign-in with an identity provider is not set up.")
        request.session.pop(REFUSAL_SESSION_KEY, None)
        try:
            return super().get(request)
        except SuspiciousOperation as exc:
            # One line, no traceback: an unknown state is a replay or a forged link; a bad token an attack or a
            # misconfigured provider. Either way the person just starts again.
            logger.warning("identity provider sign-in rejected: %s", exc)
            return self._refused("The sign-in could not be verified; please start again.")
        except requests.RequestException as exc:
            logger.warning("identity provider unreachable: %s", type(exc).__name__)
            return self._refused("The identity provider cannot be reached just now; try again in a minute.")

    def _refused(self, text: str) -> HttpResponse:
        if self.request.user.is_authenticated:
            auth.logout(self.request)
        messages.error(self.request, text)
        return HttpResponseRedirect(reverse("admin:login"))

    def login_failure(self) -> HttpResponse:
        reason = self.request.session.pop(REFUSAL_SESSION_KEY, None)
        return self._refused(reason or "The identity provider did not sign you in.")

    def login_success(self) -> HttpResponse:
        # Later requests load the user through Keyward's backend (roles and devices in one query).
        auth.login(self.request, self.user, backend="accounts.backends.KeywardModelBackend")
        if _second_factor_by_provider(getattr(self.user, ID_CLAIMS_ATTR, {})):
            second_factor.mark_verified_by_provider(self.request)
        else:
            from accounts import selectors

            if selectors.has_confirmed_device(self.user):
                second_factor.mark_pending(self.request)
        return HttpResponseRedirect(self.success_url)

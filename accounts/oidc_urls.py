"""Sign-in with the identity provider (accounts/oidc.py), included by project/urls.py under /oidc/."""

from django.urls import path

from accounts import oidc

urlpatterns = [
    path("sign-in/", oidc.SignInView.as_view(), name="oidc_authentication_init"),
    path("callback/", oidc.CallbackView.as_view(), name="oidc_callback"),
]

from django.contrib import admin
from django.urls import include, path

from project.health import healthz

# Apps are included by name: project/ imports no app.
urlpatterns = [
    path("healthz", healthz, name="healthz"),
    # The security posture dashboard (detection/urls.py).
    path("admin/posture/", include("detection.urls")),
    path("admin/", admin.site.urls),
    # Sign-in with the company's identity provider (accounts/oidc_urls.py); 404 while OIDC_ISSUER is unset.
    path("oidc/", include("accounts.oidc_urls")),
    # The session broker API and the platform's conversation-initiation webhook (broker/urls.py).
    path("api/v1/", include("broker.urls")),
]

# A refused request explains itself (which permission, which workspace) with a way back.
handler403 = "project.views.permission_denied"

from django.contrib import admin
from django.urls import include, path

from detection.views import posture_dashboard
from project.health import healthz

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    # The security posture dashboard, behind the admin's sign-in and second factor (linked from the index).
    path("admin/posture/", admin.site.admin_view(posture_dashboard), name="posture_dashboard"),
    path("admin/", admin.site.urls),
    # The session broker API and the platform's conversation-initiation webhook (broker/urls.py).
    path("api/v1/", include("broker.urls")),
]

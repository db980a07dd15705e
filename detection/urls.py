"""The security posture dashboard, behind the admin's sign-in and second factor (linked from the index)."""

from django.contrib import admin
from django.urls import path

from detection.views import posture_dashboard

urlpatterns = [
    path("", admin.site.admin_view(posture_dashboard), name="posture_dashboard"),
]

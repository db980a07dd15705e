from django.apps import AppConfig


class PlatformConfig(AppConfig):
    """The platform seam: HTTP client, error hierarchy and the loopback emulator. It has no models."""

    name = "project.platform"
    # "platform" would shadow nothing in Django, but a distinct label keeps admin/migration names unambiguous.
    label = "platform_api"
    verbose_name = "Platform"

"""Admin pages of the keys app. Roles, assignments and service accounts live here; the API-key pages are
registered by keys/admin_apikeys.py, imported at the end of this module."""

"""The sign-in backend: Django's ModelBackend, with a cheaper per-request user load.

Every admin request loads the signed-in user (AuthenticationMiddleware), then django-otp loads the device
that verified the session, then workspaces.access loads the person's role permissions: three queries before the
page does anything. KeywardModelBackend.get_user() reads all three in one: the user row with two scalar
subqueries, the ids of the user's confirmed second-factor devices and the unexpired role assignments'
(workspace, permissions) pairs. VerifiedDeviceMiddleware (accounts/middleware.py) and workspaces.access take
their answers from there; a user loaded any other way (the sign-in request itself) falls back to their
own queries, with the same results.
"""

from __future__ import annotations

import json
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.db import connection
from django.db.models.expressions import RawSQL
from django.utils import timezone

from workspaces import access

DEVICES_ATTR = "_keyward_confirmed_devices"


def _device_models() -> list[Any]:
    from django_otp.plugins.otp_static.models import StaticDevice

    from accounts.models import SealedTOTPDevice

    # The proxy: the persistent ids django_otp.login stores are "accounts.sealedtotpdevice/<id>".
    return [SealedTOTPDevice, StaticDevice]


def _annotations() -> dict[str, RawSQL]:
    from workspaces.models import Role, RoleAssignment

    qn = connection.ops.quote_name
    user = qn(get_user_model()._meta.db_table)
    postgres = connection.vendor == "postgresql"
    annotations = {}
    for n, model in enumerate(_device_models()):
        ids = "string_agg(d.id::text, ',')" if postgres else "group_concat(d.id, ',')"
        # Names from model metadata, no input: nothing to inject.
        annotations[f"kw_devices_{n}"] = RawSQL(  # noqa: S611
            f"SELECT {ids} FROM {qn(model._meta.db_table)} d WHERE d.user_id = {user}.id AND d.confirmed", [])  # noqa: S608
    pairs = ("json_agg(json_build_array(ra.workspace_id, r.permissions))::text" if postgres
             else "json_group_array(json_array(ra.workspace_id, json(r.permissions)))")
    now = RoleAssignment._meta.get_field("expires_at").get_db_prep_value(timezone.now(), connection)
    annotations["kw_roles"] = RawSQL(  # noqa: S611 - names from model metadata; the time is a parameter
        f"SELECT {pairs} FROM {qn(RoleAssignment._meta.db_table)} ra "  # noqa: S608 - names from model metadata
        f"JOIN {qn(Role._meta.db_table)} r ON r.id = ra.role_id "
        f"WHERE ra.user_id = {user}.id AND (ra.expires_at IS NULL OR ra.expires_at > %s)", [now])
    return annotations


class KeywardModelBackend(ModelBackend):
    def get_user(self, user_id: Any) -> Any:
        user_model = get_user_model()
        try:
            user = user_model._default_manager.annotate(**_annotations()).get(pk=user_id)
        except user_model.DoesNotExist:
            return None
        if not self.user_can_authenticate(user):
            return None
        devices: set[str] = set()
        for n, model in enumerate(_device_models()):
            ids = getattr(user, f"kw_devices_{n}")
            delattr(user, f"kw_devices_{n}")
            devices.update(f"{model._meta.label_lower}/{i}" for i in (ids or "").split(",") if i)
        setattr(user, DEVICES_ATTR, frozenset(devices))
        pairs = user.kw_roles
        del user.kw_roles
        access.remember_assignments(user, json.loads(pairs) if pairs else [])
        return user

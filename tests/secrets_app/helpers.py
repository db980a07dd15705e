"""Builders shared by the secrets_app tests (through the services, as the system actor)."""

from __future__ import annotations

from typing import Any

from project.actors import SYSTEM
from secrets_app import services


def make_secret(workspace, name: str = "crm_token", value: str = "crm-value-Hq28-xx", **kwargs: Any):
    return services.secret_create(actor=SYSTEM, workspace=workspace, name=name, value=value, **kwargs)


def make_tool(workspace, name: str = "lookup", headers: dict[str, str] | None = None, **kwargs: Any):
    kwargs.setdefault("description", "Look a customer up")
    kwargs.setdefault("url", "https://crm.example/api/lookup")
    return services.tool_create(actor=SYSTEM, workspace=workspace, name=name, headers=headers or {}, **kwargs)

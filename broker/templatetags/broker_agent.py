"""The agent page's token-refresh tools panel (the agents app's template loads it; agents never imports broker)."""

from __future__ import annotations

from typing import Any

from django import template

from project import access

register = template.Library()


@register.inclusion_tag("admin/broker/refresh_tools_panel.html", takes_context=True)
def refresh_tools_panel(context: dict[str, Any], agent: Any) -> dict[str, Any]:
    from broker.models import RefreshTool
    from secrets_app.models import OAuthProvider

    request = context["request"]
    tools = list(RefreshTool.objects.filter(agent=agent).select_related("provider").order_by("provider__slug"))
    used = {t.provider_id for t in tools}
    may_manage = access.has_perm(request.user, "agents.manage", agent.workspace_id)
    providers = ([p for p in OAuthProvider.objects.filter(workspace_id=agent.workspace_id).order_by("slug")
                  if p.pk not in used] if may_manage else [])
    return {"agent": agent, "tools": tools, "providers": providers, "may_manage": may_manage,
            "csrf_token": context.get("csrf_token")}

"""`{% may "permission" obj as name %}` for templates: show a button only to people who can use it.

Loaded as the `keyward` template library (TEMPLATES' "libraries" in settings). The page's view still checks again:
hiding a button is courtesy, the check in the view and the service is the rule.
"""

from __future__ import annotations

from typing import Any

from django import template

from project import access
from project.querysets import workspace_id_of

register = template.Library()


@register.simple_tag(takes_context=True)
def may(context: Any, permission: str, obj: Any = None) -> bool:
    """Whether the signed-in person holds `permission` in `obj`'s workspace (in any workspace without `obj`)."""
    request = context.get("request")
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return False
    if obj is None:
        allowed = access.workspaces_with(user, permission)
        return allowed is None or bool(allowed)
    return access.has_perm(user, permission, workspace_id_of(obj))

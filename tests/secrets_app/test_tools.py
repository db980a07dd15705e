import pytest
from django.core.exceptions import PermissionDenied, ValidationError

from project.audit.models import AuditEvent
from project.sync.models import SyncJob
from secrets_app import services
from secrets_app.models import Tool, ToolSecretReference
from secrets_app.validators import parse_header_lines
from tests.factories import make_secret, make_tool

pytestmark = pytest.mark.django_db


def _refs(tool: Tool) -> set[tuple[str, str]]:
    return set(ToolSecretReference.objects.filter(tool=tool).values_list("header", "secret__name"))


def test_the_reference_index_follows_every_tool_save(owner, workspace):
    make_secret(workspace, name="crm_token")
    make_secret(workspace, name="crm_key")
    tool = services.tool_create(actor=owner, workspace=workspace, name="lookup", description="d",
                                url="https://crm.example/x", headers={"Authorization": "{{ secret__crm_token }}",
                                                                      "Accept": "application/json"})
    assert _refs(tool) == {("Authorization", "crm_token")}
    services.tool_update(actor=owner, tool=tool, headers={"X-Key": "{{ secret__crm_key }}",
                                                          "X-Other": "{{ secret__crm_token }}"})
    assert _refs(tool) == {("X-Key", "crm_key"), ("X-Other", "crm_token")}
    services.tool_update(actor=owner, tool=tool, headers={})
    assert _refs(tool) == set()
    assert services.tools_using(workspace.secrets.get(name="crm_token")) == []


def test_an_unknown_reference_is_an_error_on_the_headers_and_changes_nothing(owner, workspace):
    with pytest.raises(ValidationError) as caught:
        make_tool(workspace, headers={"Authorization": "{{ secret__nope }}"})
    assert "no secret named “nope”" in caught.value.message_dict["headers"][0]
    assert not Tool.objects.exists() and not SyncJob.objects.exists() and not AuditEvent.objects.exists()


def test_a_reference_to_another_workspaces_secret_is_unknown(workspace, other_workspace):
    make_secret(other_workspace, name="theirs")
    with pytest.raises(ValidationError, match="no secret named"):
        make_tool(workspace, headers={"Authorization": "{{ secret__theirs }}"})


@pytest.mark.parametrize("value,message", [
    ("Bearer {{ secret__crm_token }}", "must be the whole value"),
    ("{{ secret__crm_token }}{{ secret__crm_token }}", "must be the whole value"),
    ("{{ secret__crm_token", "must be the whole value"),
    ("Bearer sk_0123456789abcdef0123", "looks like a credential"),
    ("line\nbreak", "line breaks"),
])
def test_header_values_that_cannot_be_expressed_are_refused(workspace, value, message):
    make_secret(workspace, name="crm_token")
    with pytest.raises(ValidationError) as caught:
        make_tool(workspace, headers={"Authorization": value})
    assert message in " ".join(caught.value.message_dict["headers"])


def test_header_names_follow_http_rules_and_are_unique_ignoring_case(workspace):
    with pytest.raises(ValidationError, match="not a valid header name"):
        make_tool(workspace, headers={"Bad Header": "x"})
    with pytest.raises(ValidationError, match="listed twice"):
        parse_header_lines("X-A: 1\nx-a: 2")


def test_vault_references_need_a_provider_of_the_workspace(workspace, provider):
    tool = make_tool(workspace, headers={"Authorization": "{{ secret__user_google_token }}"})
    assert _refs(tool) == set()
    with pytest.raises(ValidationError, match="no OAuth provider “slack”"):
        make_tool(workspace, name="other", headers={"Authorization": "{{ secret__user_slack_token }}"})


def test_a_tool_sending_a_secret_must_use_https(workspace):
    make_secret(workspace, name="crm_token")
    with pytest.raises(ValidationError) as caught:
        make_tool(workspace, url="http://crm.example/x", headers={"Authorization": "{{ secret__crm_token }}"})
    assert "https" in caught.value.message_dict["url"][0]
    make_tool(workspace, name="plain", url="http://crm.example/x", headers={"Accept": "text/plain"})


@pytest.mark.parametrize("name", ["has space", "a" * 65, "dot.name", ""])
def test_tool_names_follow_the_platform_rule(workspace, name):
    with pytest.raises(ValidationError) as caught:
        make_tool(workspace, name=name)
    assert "name" in caught.value.message_dict


def test_urls_may_hold_path_parameters(workspace):
    tool = make_tool(workspace, url="https://orders.example/status/{order_id}")
    assert tool.url.endswith("{order_id}")


@pytest.mark.parametrize("who", ["member", "outsider"])
def test_people_without_secrets_manage_cannot_write_tools(request, who, workspace):
    actor = request.getfixturevalue(who)
    tool = make_tool(workspace)
    with pytest.raises(PermissionDenied):
        services.tool_create(actor=actor, workspace=workspace, name="x", description="d", url="https://a.example/")
    with pytest.raises(PermissionDenied):
        services.tool_update(actor=actor, tool=tool, name="renamed")
    with pytest.raises(PermissionDenied):
        services.tool_delete(actor=actor, tool=tool)
    assert Tool.objects.get().name == "lookup"


def test_deleting_the_tool_frees_its_secret(owner, workspace):
    secret = make_secret(workspace, name="crm_token")
    tool = make_tool(workspace, headers={"Authorization": "{{ secret__crm_token }}"})
    services.tool_delete(actor=owner, tool=tool)
    services.secret_delete(actor=owner, secret=secret)
    assert set(SyncJob.objects.filter(op="delete").values_list("kind", flat=True)) == {"tool", "secret"}


def test_tool_audit_holds_templates_never_values(owner, workspace):
    make_secret(workspace, name="crm_token", value="tool-audit-canary-Kk90")
    services.tool_create(actor=owner, workspace=workspace, name="lookup", description="d",
                         url="https://crm.example/", headers={"Authorization": "{{ secret__crm_token }}"})
    event = AuditEvent.objects.get(action="tool.create")
    assert event.changes["headers"] == [None, {"Authorization": "{{ secret__crm_token }}"}]
    assert "tool-audit-canary-Kk90" not in str(list(AuditEvent.objects.values_list("changes", flat=True)))

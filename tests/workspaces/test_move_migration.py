"""A database populated before the models moved (Workspace and Environment out of agents; ServiceAccount, Role and
RoleAssignment out of keys; Alert out of detection) migrates to the new head with every row and every foreign key
where it was: the move copies nothing, it only changes which app owns each table."""

from __future__ import annotations

import pytest
from django.contrib.contenttypes.models import ContentType
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

# Each app's last migration before the move (the head of the previous release).
BEFORE_MOVE = [("agents", "0004_push_webhook_secrets"), ("keys", "0005_apikey_suspended_index"),
               ("detection", "0003_alert_created_idx"), ("broker", "0002_usage_last_granted"),
               ("secrets_app", "0001_initial")]


def _migrate(targets: list[tuple[str, str | None]]) -> MigrationExecutor:
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return MigrationExecutor(connection)


@pytest.mark.django_db(transaction=True)
def test_rows_and_foreign_keys_survive_the_move() -> None:
    old = _migrate([("workspaces", None), ("alerts", None)]).loader.project_state(BEFORE_MOVE).apps
    User = old.get_model("auth", "User")
    OldWorkspace, OldEnvironment = old.get_model("agents", "Workspace"), old.get_model("agents", "Environment")
    OldRole, OldAssignment = old.get_model("keys", "Role"), old.get_model("keys", "RoleAssignment")
    OldServiceAccount, OldApiKey = old.get_model("keys", "ServiceAccount"), old.get_model("keys", "ApiKey")
    OldAgent, OldSecret = old.get_model("agents", "Agent"), old.get_model("secrets_app", "Secret")
    OldAlert, OldIncident = old.get_model("detection", "Alert"), old.get_model("detection", "Incident")
    OldBrokerKey = old.get_model("broker", "BrokerKey")
    ct_workspace = ContentType.objects.get_or_create(app_label="agents", model="workspace")[0]

    person = User.objects.create(username="before-the-move")
    workspace = OldWorkspace.objects.create(name="Acme", slug="acme")
    prod = OldEnvironment.objects.create(workspace=workspace, name="prod", platform_environment="production",
                                         is_production=True)
    role = OldRole.objects.create(workspace=workspace, name="Custom", permissions=["workspace.view"])
    account = OldServiceAccount.objects.create(workspace=workspace, name="ci", remote_id="sa_1")
    grant = OldAssignment.objects.create(workspace=workspace, role=role, user=person)
    sa_grant = OldAssignment.objects.create(workspace=workspace, role=role, service_account=account)
    agent = OldAgent.objects.create(workspace=workspace, name="Support", auth_mode="signed")
    secret = OldSecret.objects.create(workspace=workspace, name="crm_token", value="not-a-real-token")
    key = OldApiKey.objects.create(workspace=workspace, service_account=account, environment=prod, name="ci-prod",
                                   state="active", scopes="all", hint="abcd", digest="0" * 64,
                                   remote_key_id="key_1")
    alert = OldAlert.objects.create(workspace=workspace, kind="rotation_due", title="Rotate", dedup_key="d1",
                                    object_type="keys.serviceaccount", object_id=str(account.pk))
    incident = OldIncident.objects.create(workspace=workspace, title="Leak", alert=alert)
    broker_key = OldBrokerKey.objects.create(workspace=workspace, environment=prod, service_account=account,
                                             name="web", hint="wxyz", digest="1" * 64)

    _migrate(list(MigrationExecutor(connection).loader.graph.leaf_nodes()))

    from agents.models import Agent
    from broker.models import BrokerKey
    from detection.models import Incident
    from keys.models import ApiKey
    from project.alerts.models import Alert
    from secrets_app.models import Secret
    from workspaces.models import Environment, Role, RoleAssignment, ServiceAccount, Workspace

    moved = Workspace.objects.get(pk=workspace.pk)
    assert (moved.name, moved.slug) == ("Acme", "acme")
    assert Environment.objects.get(pk=prod.pk).workspace == moved
    assert Role.objects.get(pk=role.pk).workspace == moved
    assert ServiceAccount.objects.get(pk=account.pk).remote_id == "sa_1"
    assert RoleAssignment.objects.get(pk=grant.pk).user_id == person.pk
    assert RoleAssignment.objects.get(pk=sa_grant.pk).service_account_id == account.pk
    assert Agent.objects.get(pk=agent.pk).workspace == moved
    assert Secret.objects.get(pk=secret.pk).value == "not-a-real-token"
    moved_key = ApiKey.objects.get(pk=key.pk)
    assert (moved_key.workspace_id, moved_key.environment_id, moved_key.service_account_id) == (
        workspace.pk, prod.pk, account.pk)
    moved_alert = Alert.objects.get(pk=alert.pk)
    assert moved_alert.workspace == moved
    assert moved_alert.object_type == "workspaces.serviceaccount"  # alerts name their object by its new label
    assert Incident.objects.get(pk=incident.pk).alert == moved_alert
    assert BrokerKey.objects.get(pk=broker_key.pk).service_account_id == account.pk
    # Reverse relations follow the new models too.
    assert set(moved.environments.values_list("pk", flat=True)) == {prod.pk}
    assert list(ServiceAccount.objects.get(pk=account.pk).api_keys.values_list("pk", flat=True)) == [key.pk]
    # Whatever pointed at the workspace's content type still does.
    ct_workspace.refresh_from_db()
    assert (ct_workspace.app_label, ct_workspace.model_class()) == ("workspaces", Workspace)

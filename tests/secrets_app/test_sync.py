import pytest
from django.db import connection
from django.utils import timezone

from project.platform import errors
from project.sync.models import SyncJob
from project.sync.services import job_enqueue
from secrets_app import services
from secrets_app.models import Secret, Tool
from secrets_app.sync import reconcile_secrets, reconcile_tools
from tests.factories import make_secret, make_tool

pytestmark = pytest.mark.django_db


def _due() -> None:
    SyncJob.objects.filter(state="pending").update(next_attempt_at=timezone.now())


def _remote_secrets(emulator) -> dict[str, str]:
    return {s["name"]: s["secret_id"] for s in emulator.state_snapshot()["secrets"]}


def test_a_secret_is_created_updated_and_deleted_on_the_platform(owner, workspace, emulator, drain):
    secret = make_secret(workspace, name="crm_token", value="first-Uu01")
    drain()
    secret.refresh_from_db(fields=["remote_id"])
    assert secret.remote_id and _remote_secrets(emulator) == {"acme__crm_token": secret.remote_id}
    assert emulator.secret_value(secret.remote_id) == "first-Uu01"

    services.secret_update(actor=owner, secret=secret, value="second-Uu02")
    drain()
    assert emulator.secret_value(secret.remote_id) == "second-Uu02"
    assert emulator.call_counts.get("PATCH /v1/convai/secrets/{secret_id}") == 1

    services.secret_delete(actor=owner, secret=secret)
    drain()
    assert _remote_secrets(emulator) == {}
    assert set(SyncJob.objects.values_list("state", flat=True)) == {"done"}


def test_a_rename_reaches_the_platform_with_the_value(owner, workspace, emulator, drain):
    secret = make_secret(workspace, name="crm_token", value="rename-Uu03")
    drain()
    services.secret_update(actor=owner, secret=secret, name="crm_api")
    drain()
    secret.refresh_from_db(fields=["remote_id"])
    assert _remote_secrets(emulator) == {"acme__crm_api": secret.remote_id}
    assert emulator.secret_value(secret.remote_id) == "rename-Uu03"


def test_a_tool_is_pushed_with_secret_locators(workspace, provider, emulator, drain):
    secret = make_secret(workspace, name="crm_token")
    tool = make_tool(workspace, headers={"Authorization": "{{ secret__crm_token }}", "Accept": "application/json",
                                         "X-User": "{{ secret__user_google_token }}", "X-Call": "{{ caller_id }}"})
    drain()
    secret.refresh_from_db(fields=["remote_id"])
    tool.refresh_from_db(fields=["remote_id"])
    remote = emulator.state_snapshot()["tools"][0]
    assert remote["id"] == tool.remote_id
    config = remote["tool_config"]
    assert config["name"] == "lookup" and config["type"] == "webhook"
    assert config["api_schema"]["request_headers"] == {
        "Authorization": {"secret_id": secret.remote_id}, "Accept": "application/json",
        "X-User": {"variable_name": "secret__user_google_token"}, "X-Call": {"variable_name": "caller_id"}}
    remote_secret = emulator.state_snapshot()["secrets"][0]
    assert remote_secret["secret_id"] == secret.remote_id


def test_a_tool_waits_until_its_secret_has_reached_the_platform(workspace, emulator, drain):
    make_secret(workspace, name="crm_token")
    make_tool(workspace, headers={"Authorization": "{{ secret__crm_token }}"})
    emulator.set_faults(fail_next=[503])  # the secret's create fails once
    drain()
    secret_job, tool_job = SyncJob.objects.get(kind="secret"), SyncJob.objects.get(kind="tool")
    assert secret_job.state == tool_job.state == "pending"
    assert "waiting for secret(s) crm_token" in tool_job.last_error
    assert emulator.state_snapshot()["tools"] == []
    _due()
    drain()
    assert set(SyncJob.objects.values_list("state", flat=True)) == {"done"}
    assert Tool.objects.get().remote_id


def test_the_platform_refuses_to_delete_a_secret_a_synced_tool_uses(workspace, emulator, platform, drain):
    secret = make_secret(workspace, name="crm_token")
    make_tool(workspace, headers={"Authorization": "{{ secret__crm_token }}"})
    drain()
    secret.refresh_from_db(fields=["remote_id"])
    with pytest.raises(errors.Conflict) as caught:
        platform.delete_secret(secret.remote_id)
    assert caught.value.has_code("secret_in_use")
    # A delete job pushed for it anyway (Keyward itself refuses locally) meets the same platform rule.
    job_enqueue(kind="secret", object_id=secret.pk, op="delete", workspace_id=workspace.pk,
                payload={"remote_id": secret.remote_id, "remote_name": "acme__crm_token"})
    drain()
    job = SyncJob.objects.filter(kind="secret").latest("id")
    assert job.state == "pending" and "secret_in_use" in job.last_error
    assert "Secret is used by: lookup" in job.last_error
    assert secret.remote_id in _remote_secrets(emulator).values()


@pytest.mark.parametrize("refusal_style", ["coded", "plain"])
def test_a_secret_delete_waits_for_the_tool_update_that_frees_it(owner, workspace, emulator, drain, refusal_style):
    # "plain": the platform's refusal is a 400 whose message alone says the secret is in use (its shape is
    # undocumented); it must be read as "wait for the tool update", not as a permanent failure.
    emulator.refusal_style = refusal_style
    secret = make_secret(workspace, name="crm_token")
    tool = make_tool(workspace, headers={"Authorization": "{{ secret__crm_token }}"})
    drain()
    services.secret_update(actor=owner, secret=secret, description="pending change first")
    services.tool_update(actor=owner, tool=tool, headers={})
    services.secret_delete(actor=owner, secret=secret)  # folds into the older pending secret job
    drain()
    assert _remote_secrets(emulator) != {}  # refused while the tool still used it...
    _due()
    drain()
    assert _remote_secrets(emulator) == {}  # ...and deleted once the tool update had gone through
    assert emulator.state_snapshot()["tools"][0]["tool_config"]["api_schema"]["request_headers"] == {}


@pytest.mark.parametrize("refusal_style", ["coded", "plain"])
def test_a_create_whose_answer_was_lost_is_adopted_not_duplicated(workspace, emulator, platform, drain,
                                                                   refusal_style):
    emulator.refusal_style = refusal_style  # "plain": a duplicate name refused by a generic 400 and its message
    earlier = platform.create_secret(name="acme__crm_token", value="from-a-lost-attempt")["secret_id"]
    secret = make_secret(workspace, name="crm_token", value="current-Uu04")
    drain()
    secret.refresh_from_db(fields=["remote_id"])
    assert secret.remote_id == earlier and len(_remote_secrets(emulator)) == 1
    assert emulator.secret_value(earlier) == "current-Uu04"


def test_a_retried_create_looks_up_the_secret_first(workspace, emulator, platform, drain):
    secret = make_secret(workspace, name="crm_token", value="retry-Uu05")
    SyncJob.objects.filter(kind="secret").update(attempts=1, last_error="worker lost; requeued")
    earlier = platform.create_secret(name="acme__crm_token", value="stale")["secret_id"]
    drain()
    secret.refresh_from_db(fields=["remote_id"])
    assert secret.remote_id == earlier and emulator.secret_value(earlier) == "retry-Uu05"
    assert emulator.call_counts.get("POST /v1/convai/secrets") == 1  # only the simulated lost attempt


def test_the_lookup_by_name_is_targeted_not_a_listing_of_every_secret(workspace, emulator, platform, drain):
    for n in range(250):
        platform.create_secret(name=f"other_{n:03d}", value="x")
    earlier = platform.create_secret(name="acme__crm_token", value="stale")["secret_id"]
    secret = make_secret(workspace, name="crm_token", value="retry-Uu06")
    SyncJob.objects.filter(kind="secret").update(attempts=1, last_error="worker lost; requeued")
    before = emulator.call_counts.get("GET /v1/convai/secrets", 0)
    drain()
    secret.refresh_from_db(fields=["remote_id"])
    assert secret.remote_id == earlier
    assert emulator.call_counts["GET /v1/convai/secrets"] - before == 1  # one search, not three pages of everything


def test_jobs_never_hold_a_value(owner, workspace, drain):
    secret = make_secret(workspace, name="crm_token", value="job-canary-Uu06")
    drain()
    services.secret_update(actor=owner, secret=secret, value="job-canary-Uu07")
    services.secret_delete(actor=owner, secret=secret)
    drain()
    for job in SyncJob.objects.all():
        text = f"{job.payload} {job.last_error} {job.object_repr} {job}"
        assert "job-canary" not in text


def test_an_unreadable_secret_is_never_sent(workspace, emulator, drain, settings, unrelated_key):
    secret = make_secret(workspace, name="crm_token", value="original-Uu08")
    drain()
    secret.refresh_from_db(fields=["remote_id"])
    with connection.cursor() as cursor:
        cursor.execute("SELECT value FROM secrets_app_secret WHERE id = %s", [secret.pk])
        stored = cursor.fetchone()[0]
    settings.FIELD_ENCRYPTION_KEY = [unrelated_key]
    job_enqueue(kind="secret", object_id=secret.pk, workspace_id=workspace.pk)
    drain()
    job = SyncJob.objects.filter(kind="secret").latest("id")
    assert job.state == "failed" and "cannot decrypt" in job.last_error
    assert stored not in job.last_error and stored[:24] not in str(job.payload)
    assert emulator.secret_value(secret.remote_id) == "original-Uu08"
    assert emulator.call_counts.get("PATCH /v1/convai/secrets/{secret_id}") is None


def test_reconcile_reports_secrets_and_tools_missing_on_the_platform(workspace, platform, drain):
    secret = make_secret(workspace, name="crm_token")
    tool = make_tool(workspace, headers={"Authorization": "{{ secret__crm_token }}"})
    drain()
    secret.refresh_from_db(fields=["remote_id"])
    tool.refresh_from_db(fields=["remote_id"])
    assert list(reconcile_secrets(platform)) == [] and list(reconcile_tools(platform)) == []
    platform.delete_tool(tool.remote_id)
    platform.delete_secret(secret.remote_id)
    assert [(i.object_id, i.problem) for i in reconcile_secrets(platform)] == [(secret.pk, "missing_remotely")]
    assert [(i.object_id, i.problem) for i in reconcile_tools(platform)] == [(tool.pk, "missing_remotely")]
    assert Secret.objects.get().value == "crm-value-Hq28-xx"


# --- a tool create whose answer was lost, then a rename or a delete ---------------------------------------------------
def _lost_tool_create(workspace, platform, **fields):
    """A tool whose create a worker sent and died before recording (the platform has it, Keyward does not know)."""
    from datetime import timedelta

    from project.sync.services import jobs_claim
    from secrets_app.sync import tool_config

    tool = make_tool(workspace, **fields)
    [first] = jobs_claim(worker="killed")
    platform.create_tool(tool_config=tool_config(tool))
    return tool, lambda: SyncJob.objects.filter(pk=first.pk).update(
        lease_until=timezone.now() - timedelta(seconds=1))


def _remote_tools(emulator) -> list[tuple[str, str]]:
    return sorted((t["tool_config"]["name"], t["tool_config"]["api_schema"]["url"])
                  for t in emulator.state_snapshot()["tools"])


def test_a_tool_renamed_after_a_lost_create_is_updated_not_duplicated(owner, workspace, emulator, platform, drain):
    """The retry after the rename finds the platform's copy under the name and URL the lost create sent (the tool's
    audit trail), updates it, and makes no second tool."""
    tool, worker_lost = _lost_tool_create(workspace, platform, name="lookup", url="https://crm.example/v1/lookup")
    services.tool_update(actor=owner, tool=tool, name="find_customer", url="https://crm.example/v2/find")
    worker_lost()
    drain()
    _due()
    drain()
    tool.refresh_from_db(fields=["remote_id"])
    assert _remote_tools(emulator) == [("find_customer", "https://crm.example/v2/find")]
    assert tool.remote_id == emulator.state_snapshot()["tools"][0]["id"]
    assert not SyncJob.objects.exclude(state__in=["done", "superseded"]).exists()


def test_a_tool_deleted_after_a_rename_and_a_lost_create_leaves_nothing_on_the_platform(owner, workspace, emulator,
                                                                                        platform, drain):
    tool, worker_lost = _lost_tool_create(workspace, platform, name="lookup", url="https://crm.example/v1/lookup")
    services.tool_update(actor=owner, tool=tool, name="find_customer")
    tool.refresh_from_db()
    services.tool_delete(actor=owner, tool=tool)
    worker_lost()
    drain()
    _due()
    drain()
    assert _remote_tools(emulator) == []
    assert not SyncJob.objects.exclude(state__in=["done", "superseded"]).exists()


def test_a_tool_delete_uses_the_id_an_older_job_recorded_after_the_tool_was_gone(owner, workspace, emulator,
                                                                                  platform, drain):
    """The create answered after the tool was deleted here: the tool row never got the platform id, the create's job
    did. The delete takes it from there, whatever the platform's copy is called now."""
    from project.sync.services import jobs_claim
    from secrets_app.sync import tool_config

    tool = make_tool(workspace, name="short_lived")
    [first] = jobs_claim(worker="slow")
    config = tool_config(tool)
    services.tool_delete(actor=owner, tool=tool)  # while the create is on its way
    remote_id = platform.create_tool(tool_config={**config, "name": "renamed_on_the_platform"})["id"]
    SyncJob.objects.filter(pk=first.pk).update(state="done", remote_id=remote_id, finished_at=timezone.now())
    drain()
    assert _remote_tools(emulator) == []


# --- a secret create whose answer was lost, then a rename or a delete -------------------------------------------------
def _lost_secret_create(workspace, platform, name: str, value: str):
    """A secret whose create a worker sent (its value included) and died before recording."""
    from datetime import timedelta

    from project.sync.services import jobs_claim

    secret = make_secret(workspace, name=name, value=value)
    [first] = jobs_claim(worker="killed")
    platform.create_secret(name=f"acme__{name}", value=value)
    return secret, lambda: SyncJob.objects.filter(pk=first.pk).update(
        lease_until=timezone.now() - timedelta(seconds=1))


def _drain_all(drain) -> None:
    drain()
    _due()
    drain()


def test_a_secret_renamed_after_a_lost_create_is_renamed_on_the_platform_not_left_behind(owner, workspace, emulator,
                                                                                         platform, drain):
    """No copy of the old value stays on the platform under the old name: the retry finds the lost create's copy
    under the name it sent (the secret's audit trail) and renames it, value included."""
    secret, worker_lost = _lost_secret_create(workspace, platform, "crm_token", "lost-create-Uu06")
    services.secret_update(actor=owner, secret=secret, name="crm_api", value="current-Uu07")
    worker_lost()
    _drain_all(drain)
    secret.refresh_from_db(fields=["remote_id"])
    assert _remote_secrets(emulator) == {"acme__crm_api": secret.remote_id}
    assert emulator.secret_value(secret.remote_id) == "current-Uu07"
    assert not SyncJob.objects.exclude(state__in=["done", "superseded"]).exists()


def test_a_secret_deleted_after_a_rename_and_a_lost_create_leaves_nothing_on_the_platform(owner, workspace, emulator,
                                                                                          platform, drain):
    secret, worker_lost = _lost_secret_create(workspace, platform, "crm_token", "lost-create-Uu08")
    services.secret_update(actor=owner, secret=secret, name="crm_api")
    secret.refresh_from_db()
    services.secret_delete(actor=owner, secret=secret)
    worker_lost()
    _drain_all(drain)
    assert _remote_secrets(emulator) == {}


def test_an_earlier_name_another_secret_now_has_is_not_taken_from_it(owner, workspace, emulator, platform, drain):
    """Renamed away from crm_token, and a new secret called crm_token made since: the platform's acme__crm_token is
    the new secret's to take, not the renamed one's."""
    secret, worker_lost = _lost_secret_create(workspace, platform, "crm_token", "lost-create-Uu09")
    services.secret_update(actor=owner, secret=secret, name="crm_api", value="renamed-Uu10")
    newer = make_secret(workspace, name="crm_token", value="newer-Uu11")
    worker_lost()
    _drain_all(drain)
    secret.refresh_from_db(fields=["remote_id"])
    newer.refresh_from_db(fields=["remote_id"])
    assert _remote_secrets(emulator) == {"acme__crm_api": secret.remote_id, "acme__crm_token": newer.remote_id}
    assert emulator.secret_value(secret.remote_id) == "renamed-Uu10"
    assert emulator.secret_value(newer.remote_id) == "newer-Uu11"


def test_a_secret_that_had_its_platform_id_never_takes_a_stranger_under_an_old_name(owner, workspace, emulator,
                                                                                    platform, drain):
    """Its create was confirmed, so no lost create can hide under an earlier name: a secret deleted on the platform
    behind Keyward's back is made again, and a platform secret someone else made under its old name stays theirs."""
    secret = make_secret(workspace, name="crm_token", value="first-Uu12")
    drain()
    services.secret_update(actor=owner, secret=secret, name="crm_api")
    drain()
    secret.refresh_from_db(fields=["remote_id"])
    platform.delete_secret(secret.remote_id)
    stranger = platform.create_secret(name="acme__crm_token", value="someone-elses")["secret_id"]
    services.secret_update(actor=owner, secret=secret, value="second-Uu13")
    drain()
    secret.refresh_from_db(fields=["remote_id"])
    assert _remote_secrets(emulator) == {"acme__crm_token": stranger, "acme__crm_api": secret.remote_id}
    assert emulator.secret_value(stranger) == "someone-elses"
    assert emulator.secret_value(secret.remote_id) == "second-Uu13"


def test_a_tool_that_had_its_platform_id_never_takes_a_stranger_under_an_old_name(owner, workspace, emulator,
                                                                                  platform, drain):
    from secrets_app.sync import tool_config

    tool = make_tool(workspace, name="lookup")
    drain()
    stranger_config = tool_config(tool)
    services.tool_update(actor=owner, tool=tool, name="find_customer")
    drain()
    tool.refresh_from_db(fields=["remote_id"])
    platform.delete_tool(tool.remote_id)
    stranger = platform.create_tool(tool_config=stranger_config)["id"]
    services.tool_update(actor=owner, tool=tool, description="Find a customer")
    drain()
    tool.refresh_from_db(fields=["remote_id"])
    assert tool.remote_id != stranger
    assert _remote_tools(emulator) == [("find_customer", "https://crm.example/api/lookup"),
                                       ("lookup", "https://crm.example/api/lookup")]

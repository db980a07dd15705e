"""The API-key admin pages, tried as owner, member and outsider: list with flags (constant query count), issue
and the show-once page, change, rotate, rotate now, revoke, budgets and key policies."""

import uuid

import pytest
from django.contrib.staticfiles import finders
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from keys import services
from keys.models import ApiKey, KeyPolicy
from project.audit.models import AuditEvent
from tests.conftest import SECRET_SHAPE, key_works, login
from tests.factories import environment, make_api_key

pytestmark = pytest.mark.django_db

LIST = reverse("admin:keys_apikey_changelist")
ADD = reverse("admin:keys_apikey_add")


def _url(name, key):
    return reverse(f"admin:keys_apikey_{name}", args=[key.pk])


def _issue_form(account, environment, **overrides):
    data = {"request_uuid": str(uuid.uuid4()), "service_account": account.pk, "environment": environment.pk,
            "name": "billing", "scopes": ["workspace_read"], "credit_quota": "1000", "allowed_ips": "",
            "expires_at": ""}
    data.update(overrides)
    return data


# --- the list ---------------------------------------------------------------------------------------------------
def test_list_shows_flags_and_no_secret(owner_client, owner, account):
    issued = make_api_key(owner, account, scopes="all")
    page = owner_client.get(LIST).content.decode()
    assert "billing" in page and f"…{issued.key.hint}" in page
    assert "all scopes in prod" in page and "no network limit" in page
    assert issued.secret not in page


def test_list_filters_by_flag(owner_client, owner, account):
    make_api_key(owner, account, name="sloppy", scopes="all")
    make_api_key(owner, account, "dev", name="tidy", allowed_ips=["192.0.2.0/24"])
    page = owner_client.get(LIST + "?flag=all_scopes_prod").content.decode()
    assert "sloppy" in page and "tidy" not in page
    page = owner_client.get(LIST + "?env=dev").content.decode()
    assert "tidy" in page and "sloppy" not in page


def test_list_query_count_does_not_grow_with_rows(owner, account, workspace, other_workspace):
    from tests.factories import ServiceAccountFactory

    def make(n):
        for i in range(n):
            sa = ServiceAccountFactory(workspace=workspace, name=f"svc-{ApiKey.objects.count()}-{i}",
                                       remote_id=account.remote_id)
            make_api_key(owner, sa, ["dev", "staging", "prod"][i % 3])

    client = login(owner)
    make(3)
    client.get(LIST)
    with CaptureQueriesContext(connection) as few:
        assert client.get(LIST).status_code == 200
    make(27)
    with CaptureQueriesContext(connection) as many:
        page = client.get(LIST).content.decode()
    assert page.count("billing") >= 30
    assert len(many) == len(few), [q["sql"] for q in many]


def test_member_sees_keys_but_outsider_does_not(member_client, outsider_client, owner, account):
    make_api_key(owner, account, name="acme-key")
    assert "acme-key" in member_client.get(LIST).content.decode()
    assert "acme-key" not in outsider_client.get(LIST).content.decode()


# --- issue and the show-once page ----------------------------------------------------------------------------------
def test_issue_page_shows_the_secret_once(owner_client, account, emulator, django_capture_on_commit_callbacks):
    data = _issue_form(account, environment(account.workspace))
    assert owner_client.get(ADD).status_code == 200
    with django_capture_on_commit_callbacks(execute=True):
        response = owner_client.post(ADD, data)
    page = response.content.decode()
    assert response.status_code == 200 and "no-store" in response["Cache-Control"]
    assert 'id="copy-secret"' in page and "only time it" in page
    # The copy button's script is a static file: the CSP (script-src 'self') blocks inline scripts.
    assert "keys/apikey_secret.js" in page and "<script>" not in page and finders.find("keys/apikey_secret.js")
    secret = SECRET_SHAPE.search(page).group(0)
    assert key_works(emulator, secret)
    key = ApiKey.objects.get()
    assert key.hint == secret[-4:]

    # Reloading (the browser posts the same form again) or going back shows no secret and issues nothing.
    again = owner_client.post(ADD, data)
    assert again.status_code == 200 and "no-store" in again["Cache-Control"]
    assert "cannot be shown again" in again.content.decode() and secret not in again.content.decode()
    assert ApiKey.objects.count() == 1
    for url in (_url("change", key), LIST, reverse("admin:audit_auditevent_changelist")):
        assert secret not in owner_client.get(url).content.decode()


def test_issue_form_shows_errors_on_the_right_field(owner_client, account, workspace):
    prod = environment(workspace)
    prod.credit_budget = 500
    prod.save()
    response = owner_client.post(ADD, _issue_form(account, prod, allowed_ips="10.0.0.1/24", scopes=["nope"]))
    errors = response.context["form"].errors
    assert "scopes" in errors and "allowed_ips" not in errors  # the form refuses unknown scopes itself
    response = owner_client.post(ADD, _issue_form(account, prod, allowed_ips="10.0.0.1/24"))
    assert "host bits set" in " ".join(response.context["form"].errors["allowed_ips"])
    response = owner_client.post(ADD, _issue_form(account, prod, credit_quota="800"))
    assert "300 over its budget of 500" in " ".join(response.context["form"].errors["credit_quota"])
    assert not ApiKey.objects.exists()


def test_member_cannot_issue_and_outsider_cannot_reach_acme(member_client, outsider_client, account,
                                                            globex_account):
    assert member_client.get(ADD).status_code == 403
    assert member_client.post(ADD, _issue_form(account, environment(account.workspace))).status_code == 403
    response = outsider_client.post(ADD, _issue_form(account, environment(account.workspace)))
    assert response.status_code == 200
    assert {"service_account", "environment"} <= set(response.context["form"].errors)
    assert "billing-backend" not in outsider_client.get(ADD).content.decode()
    assert not ApiKey.objects.exists()


# --- change, rotate, rotate now, revoke -----------------------------------------------------------------------------
def test_change_page_offers_the_actions_the_person_may_take(owner_client, member_client, outsider_client, owner,
                                                            account):
    key = make_api_key(owner, account).key
    page = owner_client.get(_url("change", key)).content.decode()
    assert all(f'id="{a}-link"' in page for a in ("rotate", "rotate-now", "revoke"))
    page = member_client.get(_url("change", key)).content.decode()
    assert not any(f'id="{a}-link"' in page for a in ("rotate", "rotate-now", "revoke"))
    assert outsider_client.get(_url("change", key)).status_code == 404


def test_owner_changes_a_key_and_the_budget_error_lands_on_the_quota(owner_client, owner, account, workspace,
                                                                      emulator, django_capture_on_commit_callbacks):
    key = make_api_key(owner, account).key
    prod = environment(workspace)
    prod.credit_budget = 1500
    prod.save()
    form = {"name": "renamed", "scopes": ["workspace_read"], "credit_quota": "2000", "allowed_ips": "",
            "expires_at": ""}
    response = owner_client.post(_url("change", key), form)
    assert response.status_code == 200
    assert "500 over its budget" in " ".join(response.context["adminform"].form.errors["credit_quota"])
    assert ApiKey.objects.get(pk=key.pk).name == "billing"
    with django_capture_on_commit_callbacks(execute=True):
        response = owner_client.post(_url("change", key), {**form, "credit_quota": "1500"})
    assert response.status_code == 302
    key.refresh_from_db()
    assert (key.name, key.credit_quota) == ("renamed", 1500)
    assert emulator._keys[key.remote_key_id]["character_limit"] == 1500


def test_revoked_key_page_is_read_only(owner_client, owner, account):
    key = make_api_key(owner, account).key
    services.api_key_revoke(actor=owner, key=key, reason="done")
    page = owner_client.get(_url("change", key))
    assert page.status_code == 200 and 'name="_save"' not in page.content.decode()
    response = owner_client.post(_url("change", key), {"name": "back", "scopes": ["workspace_read"]})
    assert response.status_code == 403 and ApiKey.objects.get(pk=key.pk).name == "billing"


def test_rotate_through_the_admin_shows_the_successor_once(owner_client, owner, account, emulator, clock):
    key = make_api_key(owner, account).key
    page = owner_client.get(_url("rotate", key))
    assert page.status_code == 200 and 'value="7"' in page.content.decode()
    data = {"request_uuid": str(uuid.uuid4()), "overlap_days": "3"}
    response = owner_client.post(_url("rotate", key), data)
    secret = SECRET_SHAPE.search(response.content.decode()).group(0)
    assert "no-store" in response["Cache-Control"] and key_works(emulator, secret)
    old = ApiKey.objects.get(pk=key.pk)
    assert old.state == "superseded" and (old.overlap_until - clock.now).days == 3
    again = owner_client.post(_url("rotate", key), data)
    assert secret not in again.content.decode() and ApiKey.objects.count() == 2


def test_rotate_now_through_the_admin(owner_client, owner, account, emulator, django_capture_on_commit_callbacks):
    issued = make_api_key(owner, account)
    with django_capture_on_commit_callbacks(execute=True):
        response = owner_client.post(_url("rotate_now", issued.key), {"request_uuid": str(uuid.uuid4())})
    secret = SECRET_SHAPE.search(response.content.decode()).group(0)
    assert ApiKey.objects.get(pk=issued.key.pk).state == "revoked"
    assert not key_works(emulator, issued.secret) and key_works(emulator, secret)


def test_revoke_through_the_admin(owner_client, owner, account, emulator, django_capture_on_commit_callbacks):
    issued = make_api_key(owner, account)
    assert 'value="Revoke"' in owner_client.get(_url("revoke", issued.key)).content.decode()
    assert owner_client.post(_url("revoke", issued.key), {"reason": ""}).status_code == 200
    with django_capture_on_commit_callbacks(execute=True):
        response = owner_client.post(_url("revoke", issued.key), {"reason": "leaked in a ticket"})
    assert response.status_code == 302
    assert ApiKey.objects.get(pk=issued.key.pk).revoke_reason == "leaked in a ticket"
    assert not key_works(emulator, issued.secret)


def test_suspend_and_resume_through_the_admin(owner_client, owner, account, emulator,
                                              django_capture_on_commit_callbacks):
    issued = make_api_key(owner, account)
    key = issued.key
    page = owner_client.get(_url("change", key)).content.decode()
    assert 'id="suspend-link"' in page and 'id="resume-link"' not in page
    assert 'type="submit" class="default" value="Suspend"' in owner_client.get(_url("suspend", key)).content.decode()
    # No reason: the error is on the reason field and nothing changes.
    response = owner_client.post(_url("suspend", key), {"reason": "  "})
    assert response.status_code == 200 and response.context["form"].errors["reason"]
    assert ApiKey.objects.get(pk=key.pk).suspended_at is None
    assert not AuditEvent.objects.filter(action="api_key.suspend").exists()

    with django_capture_on_commit_callbacks(execute=True):
        response = owner_client.post(_url("suspend", key), {"reason": "spend spike under investigation"})
    assert response.status_code == 302
    key.refresh_from_db()
    assert key.suspended_by == owner and key.suspend_reason == "spend spike under investigation"
    assert not key_works(emulator, issued.secret)
    listing = owner_client.get(LIST).content.decode()
    assert 'class="key-suspended" title="spend spike under investigation"' in listing
    assert owner_client.get(LIST + "?flag=suspended").context["cl"].result_count == 1
    page = owner_client.get(_url("change", key)).content.decode()
    assert 'id="resume-link"' in page and 'id="suspend-link"' not in page
    assert "spend spike under investigation" in page
    # Suspending twice: a message, no second audit line.
    assert owner_client.post(_url("suspend", key), {"reason": "again"}).status_code == 302
    assert AuditEvent.objects.filter(action="api_key.suspend").count() == 1

    assert 'value="Resume"' in owner_client.get(_url("resume", key)).content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        assert owner_client.post(_url("resume", key), {"reason": ""}).status_code == 302
    key.refresh_from_db()
    assert key.suspended_at is None and key_works(emulator, issued.secret)
    assert owner_client.get(LIST + "?flag=suspended").context["cl"].result_count == 0
    assert 'class="key-suspended"' not in owner_client.get(LIST).content.decode()
    resumed = AuditEvent.objects.get(action="api_key.resume")
    assert resumed.changes["suspend_reason"] == "spend spike under investigation"


@pytest.mark.parametrize("view", ["suspend", "resume"])
def test_suspend_and_resume_refuse_member_and_hide_from_outsider(member_client, outsider_client, owner, account,
                                                                  view):
    key = make_api_key(owner, account).key
    if view == "resume":
        services.api_key_suspend(actor=owner, key=key, reason="quota")
    before = ApiKey.objects.get(pk=key.pk).suspended_at
    assert member_client.get(_url(view, key)).status_code == 403
    assert member_client.post(_url(view, key), {"reason": "x"}).status_code == 403
    assert outsider_client.post(_url(view, key), {"reason": "x"}).status_code == 404
    assert ApiKey.objects.get(pk=key.pk).suspended_at == before


@pytest.mark.parametrize("view", ["rotate", "rotate_now", "revoke"])
def test_key_actions_refuse_member_and_hide_from_outsider(member_client, outsider_client, owner, account, view):
    key = make_api_key(owner, account).key
    post = {"request_uuid": str(uuid.uuid4()), "overlap_days": "7", "reason": "x"}
    assert member_client.get(_url(view, key)).status_code == 403
    assert member_client.post(_url(view, key), post).status_code == 403
    assert outsider_client.get(_url(view, key)).status_code == 404
    assert outsider_client.post(_url(view, key), post).status_code == 404
    assert ApiKey.objects.get(pk=key.pk).state == "active" and ApiKey.objects.count() == 1


def test_team_lead_may_rotate_but_not_rotate_now_or_revoke(owner, account, workspace):
    from tests.factories import make_person

    lead = make_person("lead", "Team lead", workspace)
    key = make_api_key(owner, account).key
    client = login(lead)
    assert client.get(_url("rotate", key)).status_code == 200
    assert client.get(_url("rotate_now", key)).status_code == 403
    assert client.get(_url("revoke", key)).status_code == 403


def test_keys_are_never_deleted_from_the_admin(owner_client, owner, account):
    key = make_api_key(owner, account).key
    assert owner_client.post(reverse("admin:keys_apikey_delete", args=[key.pk]), {"post": "yes"}).status_code == 403
    assert ApiKey.objects.filter(pk=key.pk).exists()


# --- budgets and policies -------------------------------------------------------------------------------------------
BUDGETS = reverse("admin:keys_apikey_budgets")


def test_owner_sets_budgets_and_sees_the_gap(owner_client, owner, account, workspace):
    make_api_key(owner, account, credit_quota=3000)
    prod = environment(workspace)
    response = owner_client.post(BUDGETS, {f"budget_{e.pk}": "" for e in workspace.environments.all()}
                                 | {f"budget_{prod.pk}": "2000"})
    assert "1,000 more than 2,000" in response.content.decode()
    assert environment(workspace).credit_budget is None
    response = owner_client.post(BUDGETS, {f"budget_{e.pk}": "" for e in workspace.environments.all()}
                                 | {f"budget_{prod.pk}": "5000"})
    assert response.status_code == 302 and environment(workspace).credit_budget == 5000
    assert AuditEvent.objects.filter(action="environment.update").exists()


def test_budgets_show_what_each_environment_spent_in_the_credit_guards_period(owner_client, owner, account,
                                                                            workspace):
    """The period is the detection policy's (it starts on its billing day): spend before it is not this period's."""
    from datetime import timedelta

    from django.utils import timezone

    from tests.factories import make_daily_usage, make_detection_policy

    today = timezone.now().date()
    start = today.replace(day=min(today.day, 28))
    make_detection_policy(workspace, billing_period_day=start.day)
    key = make_api_key(owner, account, credit_quota=3000).key
    make_daily_usage(key, start - timedelta(days=1), 700)  # the previous period
    make_daily_usage(key, start, 1234.4)
    page = owner_client.get(BUDGETS)
    table = {env.pk: (since, spent) for env, _, since, spent, _ in page.context["table"]}
    assert table[key.environment_id] == (start, 1234)
    assert all(spent == 0 for pk, (_, spent) in table.items() if pk != key.environment_id)
    assert "1,234" in page.content.decode()


def test_member_sees_budgets_but_cannot_change_them(member_client, outsider_client, workspace):
    page = member_client.get(BUDGETS)
    assert page.status_code == 200 and "Acme / prod" in page.content.decode()
    assert f'name="budget_{environment(workspace).pk}"' not in page.content.decode()
    assert member_client.post(BUDGETS, {f"budget_{environment(workspace).pk}": "1"}).status_code == 403
    assert "Acme" not in outsider_client.get(BUDGETS).content.decode()
    outsider_client.post(BUDGETS, {f"budget_{environment(workspace).pk}": "1"})
    assert environment(workspace).credit_budget is None


def test_key_policy_through_the_admin(owner_client, member_client, outsider_client, workspace):
    add = reverse("admin:keys_keypolicy_add")
    form = {"workspace": workspace.pk, "rotation_period_days": "60", "max_live_keys_per_account_per_env": "2",
            "idle_days": "30", "default_overlap_days": "7", "quiet_hours": "24"}
    assert member_client.post(add, form).status_code == 403
    response = outsider_client.post(add, form)
    assert response.status_code == 200 and "workspace" in response.context["adminform"].form.errors
    assert owner_client.post(add, form).status_code == 302
    policy = KeyPolicy.objects.get()
    assert policy.rotation_period_days == 60
    assert AuditEvent.objects.filter(action="key_policy.create", actor_label="owner").exists()
    change = reverse("admin:keys_keypolicy_change", args=[policy.pk])
    assert outsider_client.get(change).status_code == 404
    assert member_client.post(change, {**form, "rotation_period_days": "5"}).status_code == 403
    assert KeyPolicy.objects.get().rotation_period_days == 60


def test_every_key_page_renders_for_the_owner(owner_client, owner, account):
    key = make_api_key(owner, account).key
    for url in (LIST, ADD, _url("change", key), _url("rotate", key), _url("rotate_now", key), _url("revoke", key),
                _url("history", key), BUDGETS, reverse("admin:keys_apikey_leak_check"),
                reverse("admin:keys_keypolicy_changelist"), reverse("admin:keys_keypolicy_add")):
        assert owner_client.get(url).status_code == 200, url


def test_change_page_shows_the_platforms_key_hash_beside_the_digest(owner_client, owner, account):
    key = ApiKey.objects.get(pk=make_api_key(owner, account).key.pk)
    page = owner_client.get(_url("change", key)).content.decode()
    assert "Platform key hash" in page and key.platform_hash in page and key.digest in page

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from project.audit.models import AuditEvent
from secrets_app import services
from secrets_app.models import AuthConnection, Secret, Tool
from tests.conftest import login
from tests.factories import make_auth_connection, make_secret, make_tool, make_vault_credential

pytestmark = pytest.mark.django_db

SECRET_ADD = reverse("admin:secrets_app_secret_add")
SECRET_LIST = reverse("admin:secrets_app_secret_changelist")
TOOL_ADD = reverse("admin:secrets_app_tool_add")


def _secret_url(secret, view="change"):
    return reverse(f"admin:secrets_app_secret_{view}", args=[secret.pk])


def _value_input(page: str) -> str:
    match = re.search(r'<input[^>]*name="value"[^>]*>', page)
    assert match, "the value field is on the page"
    return match.group(0)


def test_owner_adds_a_secret_and_it_reaches_the_platform(owner_client, workspace, platform, emulator,
                                                        django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = owner_client.post(SECRET_ADD, {"workspace": workspace.pk, "name": "crm_token",
                                                  "description": "", "value": "admin-added-Ww11"})
    assert response.status_code == 302, response.content[:2000]
    secret = Secret.objects.get()
    assert secret.remote_id and emulator.secret_value(secret.remote_id) == "admin-added-Ww11"
    page = owner_client.get(_secret_url(secret)).content.decode()
    assert "synced" in page and "{{ secret__crm_token }}" in page


def test_the_value_field_is_write_only(owner_client, workspace):
    secret = make_secret(workspace, value="prefill-canary-Ww12")
    page = owner_client.get(_secret_url(secret)).content.decode()
    field = _value_input(page)
    assert 'type="password"' in field and "value=" not in field.replace('name="value"', "")
    assert "prefill-canary-Ww12" not in page and "Leave blank to keep" in page
    assert "set</span> (encrypted, write-only)" in page


def test_a_rejected_form_does_not_echo_the_typed_value(owner_client, workspace):
    response = owner_client.post(SECRET_ADD, {"workspace": workspace.pk, "name": "Bad Name",
                                              "value": "echo-canary-Ww13"})
    assert response.status_code == 200 and "name" in response.context["adminform"].form.errors
    assert "echo-canary-Ww13" not in response.content.decode()
    assert not Secret.objects.exists()


def test_blank_value_on_edit_keeps_the_value(owner_client, workspace):
    secret = make_secret(workspace, value="kept-Ww14")
    response = owner_client.post(_secret_url(secret), {"name": "crm_token", "description": "edited", "value": ""})
    assert response.status_code == 302
    secret = Secret.objects.get()
    assert secret.value == "kept-Ww14" and secret.description == "edited"


def test_the_list_shows_changes_tool_use_and_sync_state(owner_client, owner, workspace):
    services.secret_create(actor=owner, workspace=workspace, name="crm_token", value="listed-Ww15")
    make_tool(workspace, name="lookup", headers={"Authorization": "{{ secret__crm_token }}"})
    page = owner_client.get(SECRET_LIST).content.decode()
    assert "crm_token" in page and ">owner<" in page and "lookup" in page and "pending" in page
    assert "listed-Ww15" not in page


def test_the_secret_page_lists_the_tools_using_it(owner_client, workspace):
    secret = make_secret(workspace, name="crm_token")
    tool = make_tool(workspace, name="lookup", headers={"Authorization": "{{ secret__crm_token }}"})
    page = owner_client.get(_secret_url(secret)).content.decode()
    assert reverse("admin:secrets_app_tool_change", args=[tool.pk]) in page and "(Authorization)" in page


def test_deleting_a_secret_in_use_is_refused_with_the_tools_named(owner_client, workspace):
    secret = make_secret(workspace, name="crm_token")
    make_tool(workspace, name="lookup", headers={"Authorization": "{{ secret__crm_token }}"})
    for response in (owner_client.get(_secret_url(secret, "delete"), follow=True),
                     owner_client.post(_secret_url(secret, "delete"), {"post": "yes"}, follow=True)):
        assert "used by the tool lookup" in response.content.decode()
    assert Secret.objects.filter(pk=secret.pk).exists()


def test_deleting_a_free_secret_through_the_admin(owner_client, workspace):
    secret = make_secret(workspace)
    assert owner_client.get(_secret_url(secret, "delete")).status_code == 200
    assert owner_client.post(_secret_url(secret, "delete"), {"post": "yes"}).status_code == 302
    assert not Secret.objects.exists() and AuditEvent.objects.filter(action="secret.delete").exists()


def test_outsider_gets_404_for_every_object_of_the_workspace(outsider_client, workspace, provider):
    secret = make_secret(workspace)
    tool = make_tool(workspace)
    conn = make_auth_connection(workspace, "Zq-conn", secrets={"token": "t-Ww16-value"})
    credential = make_vault_credential(workspace, provider, "Zq-user", "at-Ww17")
    for model, obj in (("secret", secret), ("tool", tool), ("authconnection", conn), ("oauthprovider", provider),
                       ("usercredential", credential)):
        for view in ("change", "history", "delete"):
            url = reverse(f"admin:secrets_app_{model}_{view}", args=[obj.pk])
            assert outsider_client.get(url).status_code == 404, (model, view)
        listing = outsider_client.get(reverse(f"admin:secrets_app_{model}_changelist")).content.decode()
        assert str(obj) not in listing
    response = outsider_client.post(reverse("admin:secrets_app_secret_change", args=[secret.pk]),
                                    {"name": "stolen", "value": "x"})
    assert response.status_code == 404 and Secret.objects.get().name == "crm_token"


def test_outsider_cannot_create_a_secret_in_a_foreign_workspace(outsider_client, workspace):
    response = outsider_client.post(SECRET_ADD, {"workspace": workspace.pk, "name": "x", "value": "v-Ww18"})
    assert response.status_code == 200 and "workspace" in response.context["adminform"].form.errors
    assert not Secret.objects.exists()


def test_member_sees_secrets_but_cannot_add_change_or_delete(member_client, workspace):
    secret = make_secret(workspace, value="member-view-Ww19")
    page = member_client.get(SECRET_LIST).content.decode()
    assert "crm_token" in page and "member-view-Ww19" not in page
    assert member_client.get(SECRET_ADD).status_code == 403
    assert member_client.post(_secret_url(secret), {"name": "x", "value": "y"}).status_code == 403
    assert member_client.post(_secret_url(secret, "delete"), {"post": "yes"}).status_code == 403
    view = member_client.get(_secret_url(secret)).content.decode()
    assert "member-view-Ww19" not in view and 'name="value"' not in view
    assert Secret.objects.get().value == "member-view-Ww19"


def test_an_unreadable_secret_shows_its_state_and_a_blank_save_is_refused(owner_client, workspace, settings,
                                                                        unrelated_key):
    secret = make_secret(workspace, value="unreadable-Ww20")
    with connection.cursor() as cursor:
        cursor.execute("SELECT value FROM secrets_app_secret WHERE id = %s", [secret.pk])
        stored = cursor.fetchone()[0]
    settings.FIELD_ENCRYPTION_KEY = [unrelated_key]
    for url in (SECRET_LIST, _secret_url(secret), _secret_url(secret, "history"), _secret_url(secret, "delete")):
        page = owner_client.get(url).content.decode()
        assert stored not in page and stored[:30] not in page, url
    page = owner_client.get(_secret_url(secret)).content.decode()
    assert "cannot decrypt: encryption key missing" in page
    response = owner_client.post(_secret_url(secret), {"name": "crm_token", "description": "x", "value": ""})
    assert response.status_code == 200
    assert "cannot decrypt: encryption key missing" in " ".join(response.context["adminform"].form.errors["value"])
    with connection.cursor() as cursor:
        cursor.execute("SELECT value, description FROM secrets_app_secret WHERE id = %s", [secret.pk])
        assert cursor.fetchone() == (stored, "")


def test_tool_form_puts_reference_errors_on_the_headers_field(owner_client, workspace):
    make_secret(workspace, name="crm_token")
    data = {"workspace": workspace.pk, "name": "lookup", "description": "d", "url": "https://crm.example/x",
            "method": "POST", "response_timeout_secs": "20"}
    unknown = owner_client.post(TOOL_ADD, {**data, "headers": "Authorization: {{ secret__nope }}"})
    assert "no secret named “nope”" in " ".join(unknown.context["adminform"].form.errors["headers"])
    mixed = owner_client.post(TOOL_ADD, {**data, "headers": "Authorization: Bearer {{ secret__crm_token }}"})
    assert "must be the whole value" in " ".join(mixed.context["adminform"].form.errors["headers"])
    assert not Tool.objects.exists() and not AuditEvent.objects.filter(action__startswith="tool").exists()
    ok = owner_client.post(TOOL_ADD, {**data, "headers": "Authorization: {{ secret__crm_token }}\nAccept: */*"})
    assert ok.status_code == 302
    tool = Tool.objects.get()
    assert tool.headers == {"Authorization": "{{ secret__crm_token }}", "Accept": "*/*"}
    assert "Authorization: {{ secret__crm_token }}" in owner_client.get(
        reverse("admin:secrets_app_tool_change", args=[tool.pk])).content.decode()


def test_secret_and_tool_lists_keep_their_query_count(owner_client, workspace):
    def counts() -> tuple[int, int]:
        with CaptureQueriesContext(connection) as secrets_page:
            assert owner_client.get(SECRET_LIST).status_code == 200
        with CaptureQueriesContext(connection) as tools_page:
            assert owner_client.get(reverse("admin:secrets_app_tool_changelist")).status_code == 200
        return len(secrets_page), len(tools_page)

    make_secret(workspace, name="s0")
    make_tool(workspace, name="t0", headers={"A": "{{ secret__s0 }}"})
    few = counts()
    for i in range(1, 15):
        make_secret(workspace, name=f"s{i}")
        make_tool(workspace, name=f"t{i}", headers={"A": f"{{{{ secret__s{i} }}}}"})
    assert counts() == few and max(few) <= 10


def test_auth_connection_admin_keeps_secret_parts_write_only(owner_client, workspace):
    add = reverse("admin:secrets_app_authconnection_add")
    response = owner_client.post(add, {"workspace": workspace.pk, "name": "Shipping", "kind": "bearer_auth",
                                       "provider": "ship", "token": "bearer-canary-Ww21"})
    assert response.status_code == 302, response.context["adminform"].form.errors
    conn = AuthConnection.objects.get()
    url = reverse("admin:secrets_app_authconnection_change", args=[conn.pk])
    page = owner_client.get(url).content.decode()
    assert "bearer-canary-Ww21" not in page and "token: <span" in page
    response = owner_client.post(url, {"name": "Shipping", "kind": "bearer_auth", "provider": "ship2", "token": ""})
    assert response.status_code == 302
    conn = AuthConnection.objects.get()
    assert conn.token == "bearer-canary-Ww21" and conn.provider == "ship2"


def test_auth_connection_admin_reports_a_missing_secret_part_on_its_field(owner_client, workspace):
    response = owner_client.post(reverse("admin:secrets_app_authconnection_add"), {
        "workspace": workspace.pk, "name": "Legacy", "kind": "basic_auth", "username": "svc", "password": ""})
    assert "password" in response.context["adminform"].form.errors
    assert not AuthConnection.objects.exists()


def test_member_cannot_reach_write_pages_of_other_models(member, workspace, provider):
    client = login(member)
    for model in ("tool", "authconnection", "oauthprovider"):
        assert client.get(reverse(f"admin:secrets_app_{model}_add")).status_code == 403


def test_every_page_renders_the_unreadable_state_instead_of_ciphertext(owner_client, workspace, provider, settings,
                                                                       unrelated_key):
    from secrets_app.models import OAuthProvider, UserCredential

    make_secret(workspace)
    make_auth_connection(workspace, "Ship", secrets={"token": "bt-Ww30"})
    make_vault_credential(workspace, provider, "u1", "at-Ww31", refresh_token="rt-Ww32")
    with connection.cursor() as cursor:
        tokens = []
        for table, column in (("secret", "value"), ("authconnection", "token"), ("oauthprovider", "client_secret"),
                              ("usercredential", "access_token")):
            cursor.execute(f"SELECT {column} FROM secrets_app_{table}")
            tokens.append(cursor.fetchone()[0][:40])
    settings.FIELD_ENCRYPTION_KEY = [unrelated_key]
    objects = (("secret", Secret.objects.get()), ("authconnection", AuthConnection.objects.get()),
               ("oauthprovider", OAuthProvider.objects.get()), ("usercredential", UserCredential.objects.get()))
    for model, obj in objects:
        for url in (reverse(f"admin:secrets_app_{model}_changelist"),
                    reverse(f"admin:secrets_app_{model}_change", args=[obj.pk])):
            response = owner_client.get(url)
            assert response.status_code == 200, url
            page = response.content.decode()
            assert not any(token in page for token in tokens), url
        assert "cannot decrypt: encryption key missing" in page, model


def test_the_secret_list_filters_by_whether_a_tool_uses_the_secret(owner_client, workspace):
    make_secret(workspace, name="used_one")
    make_secret(workspace, name="used_two")
    make_secret(workspace, name="unused")
    make_tool(workspace, name="lookup", headers={"Authorization": "{{ secret__used_one }}",
                                                 "X-Other": "{{ secret__used_two }}"})
    make_tool(workspace, name="second", headers={"Authorization": "{{ secret__used_one }}"})

    def names(used):
        response = owner_client.get(SECRET_LIST, {"used": used})
        assert response.status_code == 200
        return sorted(s.name for s in response.context["cl"].result_list)

    # A secret two tools use is listed once.
    assert names("yes") == ["used_one", "used_two"]
    assert names("no") == ["unused"]
    assert "No tool uses it" in owner_client.get(SECRET_LIST).content.decode()

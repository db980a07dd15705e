"""No write-only field ever renders a submitted value (issue 19, item 5).

A write-only field is one a form lists in ``write_only_fields`` or one drawn as a password input. Two nets:

- every form class of every app: each write-only field's widget, given a canary as its value, renders no trace of
  it (this reaches the forms of custom admin views too: incident steps, key rotation);
- every admin add and change page with write-only fields: a POST with a canary in every write-only field and an
  error elsewhere answers with the form again, and the canary is nowhere in the page.
"""

from __future__ import annotations

import importlib
import inspect
import sys

import pytest
from django import forms
from django.apps import apps
from django.urls import reverse

from tests.factories import make_auth_connection, make_oauth_provider, make_secret

pytestmark = pytest.mark.django_db

CANARY = "kw-canary-wo-9Rt4Lp2Xs7Qm"
APPS = ("project", "workspaces", "accounts", "agents", "secrets_app", "keys", "broker", "detection")


def _form_classes() -> list[type[forms.BaseForm]]:
    """Every form class defined in an app's module (the admin modules are all imported at start-up)."""
    for app in APPS:
        for module_name in (f"{app}.forms", f"{app}.admin"):
            try:
                importlib.import_module(module_name)
            except ModuleNotFoundError:
                pass
    found: dict[str, type[forms.BaseForm]] = {}
    for module_name, module in list(sys.modules.items()):
        if module is None or not module_name.startswith(tuple(f"{app}." for app in APPS)) \
                or ".migrations" in module_name:
            continue
        for name, obj in list(vars(module).items()):
            if inspect.isclass(obj) and issubclass(obj, forms.BaseForm) and obj.__module__ == module_name:
                found[f"{module_name}.{name}"] = obj
    return [found[k] for k in sorted(found)]


def _write_only(form_class: type[forms.BaseForm]) -> list[str]:
    listed = set(getattr(form_class, "write_only_fields", ()))
    return sorted(name for name, field in form_class.base_fields.items()
                  if name in listed or isinstance(field.widget, forms.PasswordInput))


def test_the_net_finds_the_write_only_fields_it_must_cover():
    covered = {f"{cls.__name__}.{name}" for cls in _form_classes() for name in _write_only(cls)}
    assert {"AuthConnectionForm.custom_headers", "AuthConnectionForm.client_secret", "OAuthProviderForm.client_secret",
            "SecretForm.value", "PlatformAccountForm.api_key"} <= covered


@pytest.mark.parametrize("form_class", _form_classes(), ids=lambda c: c.__name__)
def test_no_write_only_widget_renders_its_value(form_class):
    for name in _write_only(form_class):
        widget = form_class.base_fields[name].widget
        html = widget.render(name, CANARY)
        assert CANARY not in html, f"{form_class.__name__}.{name} renders the submitted value"


def _auth_connection(workspace):
    return make_auth_connection(workspace, name="crm", kind="custom_header_auth",
                                headers={"X-Api-Key": "stored-header-value-Lk3"})


PAGES = {
    # model: (what to create for the change page, the POST with an error in a plain field)
    "secrets_app.secret": (lambda ws: make_secret(ws, "stored_secret", "stored-value-Lk3"),
                           lambda ws: {"workspace": ws.pk, "name": "bad name with spaces", "description": ""}),
    "secrets_app.authconnection": (_auth_connection,
                                   lambda ws: {"workspace": ws.pk, "name": "", "kind": "custom_header_auth",
                                               "token_url": "", "scopes": "", "claims": ""}),
    "secrets_app.oauthprovider": (lambda ws: make_oauth_provider(ws, slug="canary"),
                                  lambda ws: {"workspace": ws.pk, "name": "Canary", "slug": "canary",
                                              "token_url": "not a url", "client_id": "kw"}),
}


@pytest.mark.parametrize("page", ["add", "change"])
@pytest.mark.parametrize("model", sorted(PAGES))
def test_a_canary_posted_through_every_write_only_field_with_an_error_elsewhere_is_not_rendered(
        owner_client, workspace, model, page):
    create, post = PAGES[model]
    app_label, model_name = model.split(".")
    model_admin = __import__("django.contrib.admin", fromlist=["site"]).site._registry[apps.get_model(model)]
    form_class = model_admin.form
    data = post(workspace)
    for name in _write_only(form_class):
        data[name] = f"{CANARY}-{name}" if name != "custom_headers" else f"X-Canary: {CANARY}-{name}"
    if page == "add":
        url = reverse(f"admin:{app_label}_{model_name}_add")
    else:
        url = reverse(f"admin:{app_label}_{model_name}_change", args=[create(workspace).pk])
    response = owner_client.post(url, data)
    assert response.status_code == 200, "the form should have been shown again with its error"
    assert response.context["adminform"].form.errors
    assert CANARY not in response.content.decode()

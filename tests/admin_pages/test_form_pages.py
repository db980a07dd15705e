"""WorkspaceScopedAdmin's form pages (project/admin_base.py): one error mapping, the same 404 for another
workspace's object and 403 without the permission as before, a refusal shown on the form, a success message and
a redirect."""

from __future__ import annotations

from typing import Any

import pytest
from django import forms
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.urls import reverse

from keys.models import ApiKey
from project.admin_base import apply_errors
from tests.admin_pages.conftest import assert_no_inline_style
from tests.conftest import login
from tests.keys.conftest import MATRIX_FACTORIES, OWN

pytestmark = pytest.mark.django_db


# --- the one error mapping --------------------------------------------------------------------------------
class _Form(forms.Form):
    name = forms.CharField()
    person = forms.CharField()


def test_apply_errors_puts_field_errors_on_their_fields_and_the_rest_above_the_form():
    form = _Form({"name": "x", "person": "y"})
    assert form.is_valid()
    apply_errors(form, ValidationError({"name": "Taken.", "user": "Not here.", "quota": "Too big.",
                                        NON_FIELD_ERRORS: "Refused."}), rename={"user": "person"})
    assert form.errors["name"] == ["Taken."] and form.errors["person"] == ["Not here."]
    assert form.non_field_errors() == ["Too big.", "Refused."]
    assert "name" not in form.cleaned_data

    plain = _Form({"name": "x", "person": "y"})
    assert plain.is_valid()
    apply_errors(plain, ValidationError(["One.", "Two."]))
    assert plain.non_field_errors() == ["One.", "Two."] and set(plain.errors) == {NON_FIELD_ERRORS}


# --- form pages answer 404 for another workspace's object and 403 without the permission ---------------------
OBJECT_PAGES = {
    "keys.apikey": ["keys_apikey_rotate", "keys_apikey_rotate_now", "keys_apikey_revoke", "keys_apikey_suspend"],
    "detection.incident": ["detection_incident_revoke", "detection_incident_replace",
                           "detection_incident_blast_radius", "detection_incident_related",
                           "detection_incident_postmortem", "detection_incident_close", "detection_incident_note"],
    "agents.agent": ["agents_agent_mint"],
}
PAGES = [(label, name) for label, names in OBJECT_PAGES.items() for name in names]


@pytest.mark.parametrize("label,name", PAGES, ids=[name for _, name in PAGES])
def test_object_page_is_404_in_another_workspace_403_without_the_permission_200_with_it(
        label, name, workspace, other_workspace, owner, viewer, outsider):
    own = MATRIX_FACTORIES[label](workspace, OWN)
    url = reverse(f"admin:{name}", args=[own.pk])
    assert login(outsider).get(url).status_code == 404
    assert login(outsider).post(url, {}).status_code == 404
    assert login(viewer).get(url).status_code == 403
    assert login(viewer).post(url, {}).status_code == 403
    response = login(owner).get(url)
    assert response.status_code == 200
    assert_no_inline_style(response)


def test_a_refused_form_page_shows_the_service_error_on_the_form(owner_client, workspace, monkeypatch):
    from keys import services

    key = MATRIX_FACTORIES["keys.apikey"](workspace, OWN)

    def refuse(**kwargs: Any) -> None:
        raise ValidationError({"reason": "Say why.", "key": "Already gone."})

    monkeypatch.setattr(services, "api_key_revoke", refuse)
    response = owner_client.post(reverse("admin:keys_apikey_revoke", args=[key.pk]), {"reason": "x"})
    assert response.status_code == 200
    form = response.context["form"]
    assert form.errors["reason"] == ["Say why."] and form.non_field_errors() == ["Already gone."]
    assert ApiKey.objects.get(pk=key.pk).state == "active"


def test_a_done_form_page_says_so_and_goes_to_the_object(owner_client, workspace):
    incident = MATRIX_FACTORIES["detection.incident"](workspace, OWN)
    response = owner_client.post(reverse("admin:detection_incident_note", args=[incident.pk]), {"text": "seen"})
    change = reverse("admin:detection_incident_change", args=[incident.pk])
    assert response.status_code == 302 and response["Location"] == change
    assert "Note added." in owner_client.get(change).content.decode()

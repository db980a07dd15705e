"""/admin/autocomplete/ probed with a reverse relation's name answers 403 or 404, never 500 (issue 19, item 8)."""

from __future__ import annotations

import pytest
from django.contrib import admin

pytestmark = pytest.mark.django_db

URL = "/admin/autocomplete/"


def _reverse_relations() -> list[tuple[str, str, str]]:
    cases = []
    for model in admin.site._registry:
        for field in model._meta.get_fields():
            if field.auto_created and not field.concrete:  # a reverse relation (one-to-many, many-to-many, one-to-one)
                cases.append((model._meta.app_label, model._meta.model_name, field.name))
    return sorted(set(cases))


REVERSE = _reverse_relations()


def test_there_are_reverse_relations_to_probe():
    assert ("workspaces", "workspace", "broker_keys") in REVERSE


@pytest.mark.parametrize(("app_label", "model_name", "field_name"), REVERSE,
                         ids=[f"{a}.{m}.{f}" for a, m, f in REVERSE])
def test_a_reverse_relation_name_is_refused_not_a_crash(superuser, client, app_label, model_name, field_name):
    client.force_login(superuser)
    client.raise_request_exception = False
    response = client.get(URL, {"app_label": app_label, "model_name": model_name, "field_name": field_name,
                                "term": "a"})
    assert response.status_code in (403, 404), response.status_code


def test_an_unknown_field_or_model_is_refused(superuser, client):
    client.force_login(superuser)
    for params in ({"app_label": "nope", "model_name": "x", "field_name": "y"},
                   {"app_label": "workspaces", "model_name": "workspace", "field_name": "nope"}):
        assert client.get(URL, params).status_code in (403, 404)

"""Every admin page is styled by static/keyward/admin.css alone: no style="" attribute and no <style> element in
the HTML Keyward produces (Django's admin templates included), under a CSP whose style-src is 'self' only.

Django 5.2's admin templates emit no inline style with Keyward's admins: change_list.html has a <style> block only
for an admin that sets both actions_on_top and actions_on_bottom to False, which none does (the crawl below would
catch one that did); its scripts set styles through the CSSOM (element.style), which CSP allows.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.contrib import admin
from django.contrib.staticfiles import finders
from django.templatetags.static import static
from django.test import Client, RequestFactory
from django.urls import reverse
from django.utils import timezone

from accounts.views import lockout_response
from detection import incidents
from detection.charts import PALETTE, Line
from detection.models import Incident
from keys.models import ApiKey
from project.actors import SYSTEM
from project.alerts.services import alert_raise
from tests.admin_pages.conftest import INLINE_STYLE, STYLE_ELEMENT, assert_no_inline_style
from tests.conftest import login
from tests.factories import make_api_key, make_daily_usage
from tests.keys.conftest import MATRIX_FACTORIES, OWN

pytestmark = pytest.mark.django_db


# --- every page: the stylesheet, no inline style, no 'unsafe-inline' ------------------------------------------
def test_the_csp_of_admin_pages_allows_no_inline_style_or_script(client, superuser):
    for response in (client.get(reverse("admin:login")), login(superuser).get(reverse("admin:index"))):
        policy = response["Content-Security-Policy"]
        assert "unsafe-inline" not in policy
        directives = dict(part.strip().split(" ", 1) for part in policy.split(";") if part.strip())
        assert directives["style-src"] == "'self'" and directives["script-src"] == "'self'"


def test_the_admin_stylesheet_is_a_static_file_on_every_page(client, superuser):
    assert finders.find("keyward/admin.css")
    sign_in = client.get(reverse("admin:login"))
    assert static("keyward/admin.css") in sign_in.content.decode()
    assert_no_inline_style(sign_in)
    assert static("keyward/admin.css") in login(superuser).get(reverse("admin:index")).content.decode()


def test_the_chart_legend_colours_are_the_palette_in_the_stylesheet():
    css = open(finders.find("keyward/admin.css")).read()
    for index, colour in enumerate(PALETTE):
        line = Line("x", colour, [], 0)
        assert line.swatch == f"kw-swatch--{index}"
        assert f".kw-swatch--{index} {{ background: {colour}; }}" in css


def _custom_urls(model_admin: Any, obj: Any) -> list[tuple[str, str]]:
    """(name, url) of each page the admin adds in get_urls (Django's own views excluded)."""
    info = f"{model_admin.opts.app_label}_{model_admin.opts.model_name}"
    standard = {f"{info}_{v}" for v in ("changelist", "add", "history", "delete", "change")}
    urls = []
    for pattern in model_admin.get_urls():
        if not pattern.name or pattern.name in standard:
            continue
        if set(pattern.pattern.regex.groupindex) - {"object_id"}:
            continue  # a POST-only action with more parts (an alert's act/<verb>/): no page of its own
        if "object_id" in pattern.pattern.regex.groupindex:
            if obj is not None:
                urls.append((pattern.name, reverse(f"admin:{pattern.name}", args=[obj.pk])))
        else:
            urls.append((pattern.name, reverse(f"admin:{pattern.name}")))
    return urls


def test_no_admin_page_carries_an_inline_style(workspace, superuser, settings):
    """Every changelist, add, change, history and delete page, the index and app pages, the dashboard, the
    two-factor pages and every custom page, with an object of every kind: no style="" and no <style> (and, as
    every admin view, never cached: no view writes that header itself)."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    objects = {label: factory(workspace, OWN) for label, factory in MATRIX_FACTORIES.items()}
    # What the pages that need a particular state find: a suspended key behind a credit-guard alert (resume).
    suspended = MATRIX_FACTORIES["keys.apikey"](workspace, "suspended")
    ApiKey.objects.filter(pk=suspended.pk).update(suspended_at=timezone.now(), suspend_reason="over quota")
    guard_alert, _ = alert_raise(actor=SYSTEM, workspace=workspace, kind="credit_guard_quota", title="Quota reached",
                                 dedup_key="guard", target=suspended)
    alert_raise(actor=SYSTEM, workspace=workspace, kind="usage_spike", title="Spike", dedup_key="spike",
                severity="critical", target=objects["keys.apikey"],
                details={"credits": 5, "window": {"from": "a", "to": "b"}})
    incidents.incident_open(actor=superuser, api_key=objects["keys.apikey"], source=Incident.Source.LEAK_CHECK)
    for days_ago in range(3):  # the dashboard's charts and their legends
        make_daily_usage(objects["keys.apikey"], timezone.now().date() - timedelta(days=days_ago), 100 + days_ago)
        make_daily_usage(suspended, timezone.now().date() - timedelta(days=days_ago), 10)
    client = login(superuser)

    pages = [("admin:index", reverse("admin:index")), ("posture_dashboard", reverse("posture_dashboard")),
             ("dashboard (one workspace)", f"{reverse('posture_dashboard')}?workspace={workspace.pk}"),
             ("two-factor", reverse("admin:accounts_two_factor")),
             ("two-factor setup", reverse("admin:accounts_two_factor_setup")),
             ("password_change", reverse("admin:password_change"))]
    pages += [(f"app {app}", reverse("admin:app_list", args=[app]))
              for app in sorted({m._meta.app_label for m in admin.site._registry})]
    for model, model_admin in admin.site._registry.items():
        info = f"{model._meta.app_label}_{model._meta.model_name}"
        obj = objects.get(model._meta.label_lower)
        if model is ApiKey:
            pages.append(("keys_apikey_resume", reverse("admin:keys_apikey_resume", args=[suspended.pk])))
        if model._meta.label_lower == "alerts.alert":
            obj = guard_alert
        pages += [(f"{info}_changelist", reverse(f"admin:{info}_changelist")),
                  (f"{info}_changelist (filters)", reverse(f"admin:{info}_changelist") + "?_facets=True"),
                  (f"{info}_add", reverse(f"admin:{info}_add"))]
        if obj is not None:
            pages += [(f"{info}_{view}", reverse(f"admin:{info}_{view}", args=[obj.pk]))
                      for view in ("change", "history", "delete")]
        pages += _custom_urls(model_admin, obj)

    shown = set()
    for name, url in pages:
        response = client.get(url)
        assert response.status_code in (200, 302, 403, 405), (name, response.status_code)
        # What a view answers (exports too) passes through the site's never_cache; Django's password change page
        # is registered with admin_view(cacheable=True) by Django itself (it shows no secret).
        if response.status_code != 403 and name != "password_change":
            assert "no-store" in response.get("Cache-Control", ""), (name, response.status_code)
        if response.status_code != 200 or not response["Content-Type"].startswith("text/html"):
            continue
        assert_no_inline_style(response, name)
        shown.add(name)
    # The pages that carried inline styles before, and every custom form page, were really rendered.
    dashboard = client.get(reverse("posture_dashboard")).content.decode()
    assert dashboard.count("<polyline") >= 2 and 'class="kw-swatch kw-swatch--0"' in dashboard
    assert {"admin:index", "posture_dashboard", "dashboard (one workspace)", "two-factor setup",
            "audit_auditevent_changelist", "sync_reconcilerun_changelist", "detection_incident_change",
            "keys_apikey_changelist", "keys_apikey_change", "broker_brokerkey_changelist", "alerts_alert_changelist",
            "secrets_app_secret_change", "secrets_app_usercredential_change", "agents_agent_changelist",
            "keys_apikey_add", "keys_apikey_rotate", "keys_apikey_rotate_now", "keys_apikey_revoke",
            "keys_apikey_suspend", "keys_apikey_resume", "keys_apikey_budgets", "keys_apikey_leak_check",
            "broker_brokerkey_add", "agents_agent_mint", "alerts_alert_resume_key", "detection_incident_open",
            "detection_incident_revoke", "detection_incident_replace", "detection_incident_blast_radius",
            "detection_incident_related", "detection_incident_postmortem", "detection_incident_close",
            "detection_incident_note", "auth_user_password_change"} <= shown, sorted(shown)


def test_pages_after_a_post_and_outside_the_gate_carry_no_inline_style(client, staff, owner_client, owner,
                                                                      account, workspace):
    # The sign-in page with an error, the new authenticator's key, the lockout page.
    assert_no_inline_style(client.post(reverse("admin:login"), {"username": "nobody", "password": "wrong"}))
    signed_in = Client()
    signed_in.force_login(staff)
    page = signed_in.post(reverse("admin:accounts_two_factor_setup"), {"next": "/admin/"})
    assert "otpauth://" in page.content.decode()
    assert_no_inline_style(page)
    request = RequestFactory().get("/admin/login/")
    locked = lockout_response(request)
    assert not INLINE_STYLE.search(locked.content.decode()) and not STYLE_ELEMENT.search(locked.content.decode())
    # A leak check's report, and a form page shown again with errors.
    issued = make_api_key(owner, account)
    report = owner_client.post(reverse("admin:keys_apikey_leak_check"), {"text": f"key={issued.secret}"})
    assert 'id="leak-matches"' in report.content.decode()
    assert_no_inline_style(report)
    refused = owner_client.post(reverse("admin:keys_apikey_rotate", args=[issued.key.pk]),
                                {"overlap_days": "999", "request_uuid": str(uuid.uuid4())})
    assert refused.status_code == 200 and refused.context["form"].errors
    assert_no_inline_style(refused)
    # The incident page with a walk and a timeline that has figures.
    incident, _ = incidents.incident_open(actor=owner, api_key=issued.key, source=Incident.Source.LEAK_CHECK)
    incidents.incident_revoke(actor=owner, incident=incident, reason="leaked")
    incidents.incident_assess(actor=owner, incident=incident, exposure_start=timezone.now() - timedelta(days=1),
                              exposure_end=None, notes="line one\nline two")
    incidents.incident_list_related(actor=owner, incident=incident, refs=[], notes="none")
    page = owner_client.get(reverse("admin:detection_incident_change", args=[incident.pk]))
    assert "incident-timeline" in page.content.decode()
    assert_no_inline_style(page)

"""The browser suite: Playwright driving Debian's Chromium against a live Keyward on PostgreSQL.

Run it with `make test-browser` (scripts/test_browser.sh installs what it needs); `make test` leaves it out
(pyproject's `-m "not e2e"`). The server is pytest-django's live server (a thread of this process, on 127.0.0.1),
so the platform is the in-process emulator behind the process-wide PlatformClient and Celery tasks run eagerly
in the server's request thread, as the rest of the suite does. Each test starts from an empty database
(transactional: the server thread sees what the test commits) with two workspaces, Acme and Globex.

A failed test leaves a full-page screenshot and the page's HTML in test-artifacts/e2e/ (gitignored).
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.accounts.conftest import code_for

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "e2e"
CHROMIUM = os.environ.get("E2E_CHROMIUM", "/usr/bin/chromium")
# As this machine's notes prescribe: no sandbox (root), no GPU, and no background traffic to Google's hosts
# (the network is closed). Playwright's launch() gives every browser a fresh temporary --user-data-dir.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
PASSWORD = "correct-horse-battery-staple"
# 127.0.0.1, not "localhost": Chromium would try ::1 first, where the live server does not listen.
os.environ.setdefault("DJANGO_LIVE_TEST_SERVER_ADDRESS", "127.0.0.1")


# --- the browser --------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run `make test-browser` (it installs Debian's chromium) or set "
                    "E2E_CHROMIUM", pytrace=False)
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an asyncio loop in this thread while the browser lives; the ORM calls the
    # tests and their database flushes make between two browser steps are plain synchronous code (the server
    # runs in its own threads, without a loop).
    before = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            yield launched
            launched.close()
    finally:
        if before is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = before


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Any:
    report = yield
    setattr(item, f"e2e_report_{report.when}", report)
    return report


def _artifact_name(nodeid: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", nodeid.split("::", 1)[-1])[:120]


@pytest.fixture
def page(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh browser context (no cookies) and page; on failure its screenshot and HTML are kept."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(10_000)
    tab = context.new_page()
    yield tab
    report = getattr(request.node, "e2e_report_call", None)
    if report is not None and (report.failed or hasattr(report, "wasxfail")):
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        name = _artifact_name(request.node.nodeid)
        try:
            tab.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
            (ARTIFACTS / f"{name}.html").write_text(tab.content())
            print(f"\nscreenshot of the failure: {ARTIFACTS / name}.png (url: {tab.url})")
        except Exception as exc:  # the page may have crashed with the test: say so, keep the test's own error
            print(f"\nno screenshot of the failure: {exc}")
    context.close()


@pytest.fixture(scope="session", autouse=True)
def _fresh_artifacts() -> None:
    shutil.rmtree(ARTIFACTS, ignore_errors=True)


# --- the server and its data ----------------------------------------------------------------------------------
@pytest.fixture(autouse=True)
def _e2e_environment(settings: Any, transactional_db: None) -> None:
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.fail("the browser suite runs against PostgreSQL: set DATABASE_URL=postgres://... "
                    "(make test-browser does)", pytrace=False)
    settings.OTP_REQUIRED = True  # as in production: no admin page without a verified second factor
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # speed; not under test here
    # A transactional test's flush removes the built-in roles their data migration made: put them back.
    from workspaces.models import Role
    from workspaces.permissions import BUILTIN_ROLES

    for name, permissions in BUILTIN_ROLES.items():
        Role.objects.get_or_create(workspace=None, name=name,
                                   defaults={"permissions": sorted(permissions), "is_builtin": True})


@dataclass
class World:
    acme: Any
    globex: Any


@pytest.fixture
def world(platform: Any) -> World:
    """Acme and Globex, each with its dev, staging and prod environments, created as a superuser would."""
    from tests.factories import UserFactory
    from workspaces.services import workspace_create

    root = UserFactory(username="e2e-root", is_superuser=True)
    return World(acme=workspace_create(actor=root, name="Acme Voice", slug="acme"),
                 globex=workspace_create(actor=root, name="Globex Support", slug="globex"))


@dataclass
class Person:
    user: Any
    device: Any

    @property
    def username(self) -> str:
        return self.user.get_username()


def person(username: str, role: str | None, workspace: Any, *, enrolled: bool = True, **extra: Any) -> Person:
    """A staff login with `role` in `workspace` and (unless enrolled=False) a confirmed authenticator, set up
    through the services as the enrolment page would."""
    from tests.factories import make_confirmed_device, make_person

    user = make_person(username, role, workspace, password=PASSWORD, **extra)
    device = make_confirmed_device(user)[0] if enrolled else None
    return Person(user, device)


# --- signing in -------------------------------------------------------------------------------------------------
def password_step(page: Any, base: str, username: str, password: str = PASSWORD) -> None:
    page.goto(f"{base}/admin/login/?next=/admin/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("input[type=submit]")


def sign_in(page: Any, base: str, who: Person) -> None:
    """Password, then the authenticator's code on the second step, in the browser."""
    from playwright.sync_api import expect

    password_step(page, base, who.username)
    expect(page).to_have_url(re.compile(r"/admin/two-factor/verify/"))
    # The enrolment used the current time step; django-otp refuses a step twice, so the app shows the next one.
    page.fill("#id_code", code_for(who.device, steps_ahead=1))
    page.click("input[type=submit][value=Verify]")
    expect(page).to_have_url(f"{base}/admin/")
    expect(page.locator("#user-tools")).to_contain_text("Log out")


# --- known bugs in pages other engineers own ----------------------------------------------------------------------
class OriginNullRefused(AssertionError):
    """A form POST was refused by Django's CSRF check because the browser sent `Origin: null`."""


#: A page answering with `Referrer-Policy: no-referrer` makes browsers POST its form with `Origin: null`, which
#: Django's CSRF check refuses: the key and incident pages once did. `submitted` names that failure plainly.


def submitted(page: Any) -> None:
    """After a form POST: fail as OriginNullRefused when the CSRF check refused a null Origin."""
    if "CSRF verification failed" in page.content():
        raise OriginNullRefused(f"CSRF refused the POST to {page.url} (the form page sent Referrer-Policy: "
                                f"no-referrer, so the browser sent Origin: null)")


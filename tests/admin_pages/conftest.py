"""Fixtures of the admin-page tests (from the apps' test folders) and the checks every page must pass."""

from __future__ import annotations

import re
from typing import Any

from tests.accounts.conftest import enrolled, staff  # noqa: F401  (fixtures)
from tests.broker.conftest import backend, key_fields, signed_agent  # noqa: F401  (fixtures)

INLINE_STYLE = re.compile(r"<[a-zA-Z][^>]*\sstyle\s*=", re.IGNORECASE)
STYLE_ELEMENT = re.compile(r"<style[\s>]", re.IGNORECASE)


def assert_no_inline_style(response: Any, where: str = "") -> None:
    """No style="" attribute and no <style> element in the page, and a CSP without 'unsafe-inline'."""
    html = response.content.decode()
    found = INLINE_STYLE.findall(html) + STYLE_ELEMENT.findall(html)
    assert not found, f"{where or response.request['PATH_INFO']}: inline style {found[:3]}"
    policy = response["Content-Security-Policy"]
    assert "unsafe-inline" not in policy and "style-src 'self';" in policy


def assert_never_cached(response: Any) -> None:
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    assert_no_inline_style(response)

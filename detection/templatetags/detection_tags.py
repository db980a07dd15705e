"""Small template filters for the detection pages."""

from __future__ import annotations

from django import template

register = template.Library()


@register.filter
def thousands(value: object) -> str:
    """1234567.8 → "1,234,568"; small fractions keep two decimals; anything else as it is."""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return "" if value is None else str(value)
    if number == int(number) or abs(number) >= 100:
        return f"{number:,.0f}"
    return f"{number:,.2f}"

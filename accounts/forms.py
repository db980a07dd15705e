from __future__ import annotations

from django import forms


class CodeForm(forms.Form):
    """One field for a one-time code: six digits from the app, or a recovery code."""

    code = forms.CharField(
        label="Code", max_length=32, strip=True,
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "autofocus": True, "size": 12,
                                      "spellcheck": "false", "autocapitalize": "off"}),
    )

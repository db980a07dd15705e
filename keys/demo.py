"""Demo rows for seed_demo, gathered from the keys app's parts (roles and people; API keys)."""

from __future__ import annotations

import importlib
from collections.abc import Callable

demo_seeders: list[Callable[..., None]] = []
for _name in ("keys.demo_roles", "keys.demo_apikeys"):
    try:
        demo_seeders += getattr(importlib.import_module(_name), "demo_seeders", [])
    except ModuleNotFoundError as exc:  # a part not installed yet
        if exc.name != _name:
            raise

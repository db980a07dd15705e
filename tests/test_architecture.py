"""The floors of README's "Architecture" are a contract (pyproject's [tool.importlinter]), and it bites."""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path
from typing import Any

import grimp
import pytest
from importlinter.contracts.forbidden import ForbiddenContract
from importlinter.contracts.independence import IndependenceContract
from importlinter.contracts.layers import LayersContract

ROOT = Path(__file__).resolve().parent.parent
CONFIG = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
TYPES = {"layers": LayersContract, "independence": IndependenceContract, "forbidden": ForbiddenContract}


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph(*CONFIG["root_packages"], cache_dir=None)


def _contract(name_part: str) -> Any:
    spec = next(c for c in CONFIG["contracts"] if name_part in c["name"])
    options = {k: v for k, v in spec.items() if k not in ("name", "type")}
    return TYPES[spec["type"]](name=spec["name"], session_options={"root_packages": CONFIG["root_packages"]},
                               contract_options=options)


def test_every_contract_is_kept_by_the_code(graph: grimp.ImportGraph) -> None:
    for spec in CONFIG["contracts"]:
        check = _contract(spec["name"]).check(graph, verbose=False)
        assert check.kept, f"{spec['name']}: {check.metadata}"


@pytest.mark.parametrize(("importer", "imported"), [
    ("workspaces.models", "keys.models"),        # tenancy reaching up into a feature app
    ("keys.services", "detection.rules"),        # a feature app reaching the top floor
    ("project.alerts.services", "workspaces.models"),  # the ground floor importing an app
    ("agents.sync", "broker.models"),             # the cycle this layout removed
])
def test_an_upward_import_breaks_the_floors(graph: grimp.ImportGraph, importer: str, imported: str) -> None:
    upward = copy.deepcopy(graph)
    upward.add_import(importer=importer, imported=imported, line_number=1, line_contents=f"import {imported}")
    assert not _contract("Floors").check(upward, verbose=False).kept


def test_keys_and_secrets_must_not_know_each_other(graph: grimp.ImportGraph) -> None:
    sideways = copy.deepcopy(graph)
    sideways.add_import(importer="secrets_app.services", imported="keys.models", line_number=1,
                        line_contents="import keys.models")
    assert not _contract("do not know each other").check(sideways, verbose=False).kept

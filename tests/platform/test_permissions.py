"""The permission catalogue against the official SDK's PermissionType (the installed SDK when present, else the
frozen copy of elevenlabs 2.78.0's enum beside this file), and "all" however the platform lists it."""

from __future__ import annotations

import json
import typing
from pathlib import Path

import pytest

from project.platform.scopes import ALL, PERMISSION_TYPES, permissions_as_listed, same_permissions

FROZEN = Path(__file__).with_name("sdk_permission_types.json")


def sdk_permission_types() -> tuple[str, ...]:
    """The SDK's PermissionType literals: from the installed ``elevenlabs`` package if any, else the frozen copy."""
    try:
        from elevenlabs.types.permission_type import PermissionType
    except ImportError:
        return tuple(json.loads(FROZEN.read_text())["PermissionType"])
    literal = next(arg for arg in typing.get_args(PermissionType) if typing.get_origin(arg) is typing.Literal)
    return typing.get_args(literal)


def test_catalogue_is_the_sdks_permission_type():
    assert PERMISSION_TYPES == sdk_permission_types()
    assert {"voice_collections_read", "voice_collections_write", "agents_architect"} <= set(PERMISSION_TYPES)


def test_frozen_copy_matches_the_installed_sdk():
    pytest.importorskip("elevenlabs")
    assert tuple(json.loads(FROZEN.read_text())["PermissionType"]) == sdk_permission_types()


@pytest.mark.parametrize("listed", [None, "all", list(PERMISSION_TYPES), list(reversed(PERMISSION_TYPES))])
def test_all_is_all_however_the_platform_lists_it(listed):
    assert permissions_as_listed(listed) == ALL
    assert same_permissions("all", listed)


def test_permission_lists_compare_as_sets():
    assert same_permissions(["convai_read", "workspace_read"], ["workspace_read", "convai_read"])
    assert not same_permissions(["convai_read"], ["convai_read", "convai_write"])
    assert not same_permissions("all", ["convai_read"])

"""The platform's API-key permission catalogue: one copy for the client side (keys) and the emulator."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

# The platform's PermissionType enum as the official SDK (elevenlabs 2.78.0) has it: 52 values, in the SDK's
# order. tests/platform/test_permissions.py checks it against the installed SDK, or against the frozen copy in
# tests/platform/sdk_permission_types.json when the SDK is not installed, so it cannot drift silently.
PERMISSION_TYPES: tuple[str, ...] = (
    "text_to_speech", "speech_to_speech", "speech_to_text", "models_read", "models_write", "voices_read",
    "voices_write", "voice_collections_read", "voice_collections_write", "speech_history_read",
    "speech_history_write", "sound_generation", "audio_isolation", "voice_generation", "dubbing_read",
    "dubbing_write", "pronunciation_dictionaries_read", "pronunciation_dictionaries_write", "user_read",
    "user_write", "projects_read", "projects_write", "audio_native_read", "audio_native_write", "workspace_read",
    "workspace_write", "forced_alignment", "convai_read", "convai_write", "agents_architect", "music_generation",
    "image_video_generation", "flows", "templates", "add_voice_from_voice_library", "create_instant_voice_clone",
    "create_professional_voice_clone", "publish_voice_to_voice_library", "share_voice_externally",
    "create_user_api_key", "workspace_analytics_full_read", "webhooks_write", "service_account_write",
    "group_members_manage", "workspace_members_read", "workspace_members_invite", "workspace_members_remove",
    "terms_of_service_accept", "audit_log_read", "conversation_privacy_manage", "copy_resources_cross_workspace",
    "synthid_detector",
)  # fmt: skip

ALL = "all"


def permissions_as_listed(value: Any) -> str | frozenset[str]:
    """A key's permissions as the platform lists them, made comparable: ``"all"`` for null, the "all" sentinel
    or a list holding every permission the catalogue knows (the platform may answer "all" either way), else the
    set of names (the platform's order means nothing)."""
    if value is None or value == ALL:
        return ALL
    names = frozenset(str(v) for v in value) if isinstance(value, Iterable) and not isinstance(value, str) \
        else frozenset({str(value)})
    return ALL if names >= frozenset(PERMISSION_TYPES) else names


def same_permissions(mine: Any, theirs: Any) -> bool:
    """Whether two permission values grant the same: "all" however written, lists compared as sets."""
    return permissions_as_listed(mine) == permissions_as_listed(theirs)

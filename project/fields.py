"""Keyward's encrypted model fields: django-encrypted-model-fields, but failing closed.

The library (0.6.5) has two behaviours a security product cannot keep:

- when no configured key can decrypt a stored value it returns the *ciphertext* as if it were the value,
  so a page would show it, a sync job would send it and a form save would encrypt it a second time;
- it builds its ``MultiFernet`` once, at import (``encrypted_model_fields.fields.CRYPTER``), so a key
  change in settings (``override_settings`` in tests, a rotation in a shell) is not seen.

These subclasses keep the library's storage format (a Fernet token in a text column, so existing rows
and the library's migrations stay valid) and change the rest:

- reading from the database decrypts with any configured key (``FIELD_ENCRYPTION_KEY`` is a list: the
  first key encrypts, all decrypt); a value no key can read becomes the ``UNDECRYPTABLE`` marker, which
  holds no ciphertext at all;
- reading the attribute of a row whose value is ``UNDECRYPTABLE`` raises ``DecryptionError`` (no
  ciphertext in its message), and so does saving the row (``save()`` reads every field), so nothing can
  write such a row back; giving the attribute a new value replaces the marker;
- ``to_python`` never decrypts: Python-side values are plaintext, and a user value that happens to look
  like a token is not "decrypted";
- the crypter is built from the current settings on every use (cached per key list).

``field_state(instance, name)`` tells "set", "empty" or "unreadable" without raising and without
exposing the value, for admin pages.
"""

from __future__ import annotations

import functools
from typing import Any

import cryptography.fernet
from django import forms
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import models
from django.db.models.query_utils import DeferredAttribute
from encrypted_model_fields import fields as library

CANNOT_DECRYPT = "cannot decrypt: encryption key missing"


class DecryptionError(Exception):
    """No configured FIELD_ENCRYPTION_KEY can decrypt a stored value. The message never holds ciphertext."""


class Undecryptable:
    """Stands in for a stored value that no configured key can decrypt. Holds nothing of the ciphertext."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"<{CANNOT_DECRYPT}>"

    __str__ = __repr__

    def __bool__(self) -> bool:
        return True

    def __deepcopy__(self, memo: dict) -> Undecryptable:
        return self

    def __reduce__(self) -> str:
        return "UNDECRYPTABLE"


UNDECRYPTABLE = Undecryptable()


# --- keys ----------------------------------------------------------------------------------------------
def configured_keys() -> tuple[str, ...]:
    keys = getattr(settings, "FIELD_ENCRYPTION_KEY", None)
    if not keys:
        raise ImproperlyConfigured("FIELD_ENCRYPTION_KEY must hold at least one key")
    if isinstance(keys, str | bytes):
        keys = [keys]
    return tuple(k.decode() if isinstance(k, bytes) else str(k) for k in keys)


@functools.lru_cache(maxsize=16)
def _fernets(keys: tuple[str, ...]) -> tuple[cryptography.fernet.Fernet, ...]:
    try:
        return tuple(cryptography.fernet.Fernet(k) for k in keys)
    except (ValueError, TypeError) as exc:
        raise ImproperlyConfigured(f"FIELD_ENCRYPTION_KEY holds an invalid Fernet key ({type(exc).__name__})") from None


@functools.lru_cache(maxsize=16)
def _multi(keys: tuple[str, ...]) -> cryptography.fernet.MultiFernet:
    return cryptography.fernet.MultiFernet(list(_fernets(keys)))


def crypter() -> cryptography.fernet.MultiFernet:
    """Encrypts with the first configured key, decrypts with any of them (read from settings each call)."""
    return _multi(configured_keys())


def primary_fernet() -> cryptography.fernet.Fernet:
    """The newest key alone: a token it can decrypt is already encrypted with the newest key."""
    return _fernets(configured_keys())[0]


def encrypt(plaintext: str) -> str:
    return crypter().encrypt(plaintext.encode("utf-8")).decode("ascii")


def decrypt(token: str | bytes) -> str:
    """Plaintext of a stored token; raises cryptography.fernet.InvalidToken when no key can read it."""
    raw = token.encode("utf-8") if isinstance(token, str) else token
    return crypter().decrypt(raw).decode("utf-8")


# --- the fields ------------------------------------------------------------------------------------------
class EncryptedAttribute(DeferredAttribute):
    """A data descriptor, so every read passes here: reading an undecryptable value raises."""

    def __get__(self, instance: Any, cls: Any = None) -> Any:
        value = super().__get__(instance, cls)
        if instance is not None and isinstance(value, Undecryptable):
            raise DecryptionError(_message(instance, self.field))
        return value

    def __set__(self, instance: Any, value: Any) -> None:
        instance.__dict__[self.field.attname] = value


def _message(instance: Any, field: models.Field) -> str:
    pk = instance.__dict__.get(instance._meta.pk.attname)
    return (f"{CANNOT_DECRYPT}: {instance._meta.label}.{field.name} (id {pk}) cannot be decrypted with any "
            "configured FIELD_ENCRYPTION_KEY; restore the key it was written with")


class KeywardEncryptedMixin:
    """Fail-closed behaviour shared by the Keyward encrypted fields (see the module docstring)."""

    descriptor_class = EncryptedAttribute

    def to_python(self, value: Any) -> Any:
        # Python-side values are plaintext: never try to decrypt them (the library does, which turns a
        # token-shaped user value into something else).
        if value is None or isinstance(value, Undecryptable):
            return value
        return super(library.EncryptedMixin, self).to_python(value)  # type: ignore[misc]

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, bytes | memoryview):
            value = bytes(value).decode("utf-8")
        try:
            plaintext = decrypt(value)
        except cryptography.fernet.InvalidToken:
            return UNDECRYPTABLE
        return super(library.EncryptedMixin, self).to_python(plaintext)  # type: ignore[misc]

    def get_db_prep_save(self, value: Any, connection: Any) -> Any:
        if isinstance(value, Undecryptable):
            raise DecryptionError(f"{CANNOT_DECRYPT}: refusing to write an unreadable value back")
        value = super(library.EncryptedMixin, self).get_db_prep_save(value, connection)  # type: ignore[misc]
        if value is None:
            return None
        return encrypt(str(value))

    def value_to_string(self, obj: Any) -> str:
        # Serialisation (dumpdata, admin "history" of some packages) gets no value at all.
        return ""

    def formfield(self, **kwargs: Any) -> Any:
        # A safety net: a form that includes the field by mistake still never renders the value back.
        kwargs.setdefault("widget", forms.PasswordInput(render_value=False))
        return super().formfield(**kwargs)  # type: ignore[misc]


class EncryptedCharField(KeywardEncryptedMixin, library.EncryptedCharField):
    """A CharField (max_length checks the plaintext) stored as a Fernet token in a text column."""


class EncryptedTextField(KeywardEncryptedMixin, library.EncryptedTextField):
    """A TextField stored as a Fernet token."""


def encrypted_fields(model: type[models.Model]) -> list[models.Field]:
    return [f for f in model._meta.concrete_fields if isinstance(f, KeywardEncryptedMixin)]


def field_state(instance: models.Model, name: str) -> str:
    """"set", "empty" or "unreadable" for an encrypted field, without raising or returning the value."""
    field = instance._meta.get_field(name)
    if field.attname not in instance.__dict__ and instance.pk is not None:
        fresh = type(instance)._base_manager.filter(pk=instance.pk).values_list(field.attname, flat=True).first()
        instance.__dict__[field.attname] = fresh
    value = instance.__dict__.get(field.attname)
    if isinstance(value, Undecryptable):
        return "unreadable"
    return "set" if value else "empty"


def unreadable_fields(instance: models.Model) -> list[str]:
    """Names of the instance's encrypted fields that no configured key can decrypt (loaded ones only)."""
    return [f.name for f in encrypted_fields(type(instance))
            if isinstance(instance.__dict__.get(f.attname), Undecryptable)]

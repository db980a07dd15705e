import pytest
from cryptography.fernet import Fernet
from django.db import connection, transaction
from django.test import override_settings
from encrypted_model_fields import fields as library

from project.fields import CANNOT_DECRYPT, UNDECRYPTABLE, DecryptionError, field_state, unreadable_fields
from secrets_app.models import Secret
from tests.factories import make_secret

pytestmark = pytest.mark.django_db


def raw_value(secret: Secret) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT value FROM secrets_app_secret WHERE id = %s", [secret.pk])
        return cursor.fetchone()[0]


def test_database_column_holds_a_fernet_token_not_the_value(workspace, settings):
    secret = make_secret(workspace, value="plain-Wq93-value")
    stored = raw_value(secret)
    assert "plain-Wq93-value" not in stored and stored.startswith("gAAAAA")
    assert Fernet(settings.FIELD_ENCRYPTION_KEY[0]).decrypt(stored.encode()).decode() == "plain-Wq93-value"
    assert Secret.objects.get(pk=secret.pk).value == "plain-Wq93-value"


def test_library_alone_returns_ciphertext_for_an_unknown_key(unrelated_key):
    # Why project.fields exists: the library hands back the token as if it were the value.
    token = Fernet(Fernet.generate_key()).encrypt(b"lost-value").decode()
    assert library.EncryptedTextField().to_python(token) == token


def test_reading_with_an_unrelated_key_raises_a_clear_error_without_ciphertext(workspace, unrelated_key):
    secret = make_secret(workspace, value="keyed-Pn51-value")
    stored = raw_value(secret)
    with override_settings(FIELD_ENCRYPTION_KEY=[unrelated_key]):
        loaded = Secret.objects.get(pk=secret.pk)  # loading the row works; reading the value does not
        assert loaded.name == "crm_token"
        with pytest.raises(DecryptionError) as caught:
            _ = loaded.value
        assert CANNOT_DECRYPT in str(caught.value) and "secrets_app.Secret.value" in str(caught.value)
        assert stored not in str(caught.value) and stored[:20] not in repr(caught.value)
        assert stored not in repr(loaded.__dict__)
        assert Secret.objects.values_list("value", flat=True).get(pk=secret.pk) is UNDECRYPTABLE
        assert field_state(loaded, "value") == "unreadable" and unreadable_fields(loaded) == ["value"]


def test_an_unreadable_row_cannot_be_saved_back(workspace, unrelated_key):
    secret = make_secret(workspace)
    stored = raw_value(secret)
    with override_settings(FIELD_ENCRYPTION_KEY=[unrelated_key]):
        loaded = Secret.objects.get(pk=secret.pk)
        loaded.description = "touched"
        with pytest.raises(DecryptionError), transaction.atomic():
            loaded.save()
        with pytest.raises(DecryptionError), transaction.atomic():
            Secret.objects.filter(pk=secret.pk).update(value=UNDECRYPTABLE)
    assert raw_value(secret) == stored


def test_a_new_value_replaces_an_unreadable_one(workspace, unrelated_key):
    secret = make_secret(workspace)
    with override_settings(FIELD_ENCRYPTION_KEY=[unrelated_key]):
        loaded = Secret.objects.get(pk=secret.pk)
        loaded.value = "replacement-Tt62"
        loaded.save()
        assert Secret.objects.get(pk=secret.pk).value == "replacement-Tt62"


def test_a_token_shaped_user_value_is_stored_as_typed(workspace, settings):
    token_like = Fernet(settings.FIELD_ENCRYPTION_KEY[0]).encrypt(b"inner").decode()
    secret = make_secret(workspace, value=token_like)
    assert Secret.objects.get(pk=secret.pk).value == token_like


def test_first_key_encrypts_and_every_key_decrypts(workspace, settings):
    old = settings.FIELD_ENCRYPTION_KEY[0]
    new = Fernet.generate_key().decode()
    before = make_secret(workspace, name="before", value="written-with-old")
    with override_settings(FIELD_ENCRYPTION_KEY=[new, old]):
        assert Secret.objects.get(pk=before.pk).value == "written-with-old"
        after = make_secret(workspace, name="after", value="written-with-new")
    Fernet(new).decrypt(raw_value(after).encode())  # the newest key encrypted it
    with override_settings(FIELD_ENCRYPTION_KEY=[new]):
        assert Secret.objects.get(pk=after.pk).value == "written-with-new"
        with pytest.raises(DecryptionError):
            _ = Secret.objects.get(pk=before.pk).value


def test_an_accidental_model_form_field_never_renders_the_value(workspace):
    from django import forms

    class Careless(forms.ModelForm):
        class Meta:
            model = Secret
            fields = ("name", "value")

    secret = make_secret(workspace, value="must-not-render-Vb07")
    assert "must-not-render-Vb07" not in str(Careless(instance=secret))


def test_repr_and_str_of_models_hold_no_secret(workspace):
    secret = make_secret(workspace, value="repr-canary-Lm33")
    assert "repr-canary-Lm33" not in repr(secret) and "repr-canary-Lm33" not in str(secret)

import io
import time

import pytest
from cryptography.fernet import Fernet
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import override_settings

from project.fields import primary_fernet
from secrets_app.management.commands import reencrypt_fields
from secrets_app.models import AuthConnection, OAuthProvider, Secret, UserCredential
from tests.factories import make_auth_connection, make_secret, make_vault_credential
from workspaces.models import PlatformAccount

pytestmark = pytest.mark.django_db

ROWS = 10_000


def _stored(model=Secret, column="value") -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {column} FROM {model._meta.db_table} ORDER BY id")
        return [row[0] for row in cursor.fetchall()]


def _under(key: str, tokens: list[str]) -> int:
    fernet, count = Fernet(key), 0
    for token in tokens:
        try:
            fernet.decrypt(token.encode())
            count += 1
        except Exception:
            pass
    return count


def _accounts_under(key: str) -> None:
    """Every database holds the default platform account (its key encrypted at migrate time, under the
    development key): rewrite it under `key`, so the whole database is under `key` as in a real deployment."""
    accounts = list(PlatformAccount.objects.all())
    with override_settings(FIELD_ENCRYPTION_KEY=[key]):
        for account in accounts:
            account.save()


def _run(*args: str) -> str:
    out = io.StringIO()
    call_command("reencrypt_fields", *args, stdout=out)
    return out.getvalue()


def test_discovers_every_model_with_an_encrypted_field():
    labels = {t.label: t.columns for t in reencrypt_fields.discover()}
    assert labels["secrets_app.Secret"] == ["value"]
    assert set(labels["secrets_app.AuthConnection"]) == set(AuthConnection.SECRET_FIELDS)
    assert labels["secrets_app.OAuthProvider"] == ["client_secret"]
    assert set(labels["secrets_app.UserCredential"]) == {"access_token", "refresh_token"}


def test_rotation_of_10000_rows_interrupted_halfway_and_resumed(workspace, capsys):
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    values = [f"v{i:05d}-{i * 7919 % 100003:06d}" for i in range(ROWS)]
    _accounts_under(old)
    with override_settings(FIELD_ENCRYPTION_KEY=[old]):
        Secret.objects.bulk_create([Secret(workspace=workspace, name=f"s{i:05d}", value=v)
                                    for i, v in enumerate(values)], batch_size=1000)
    assert _under(old, _stored()) == ROWS

    with override_settings(FIELD_ENCRYPTION_KEY=[new, old]):
        started = time.perf_counter()
        first = _run("--batch-size", "500", "--max-batches", "10")
        first_seconds = time.perf_counter() - started
        tokens = _stored()
        assert _under(new, tokens) == ROWS // 2 and _under(old, tokens) == ROWS // 2  # interrupted halfway
        assert "Stopped after 10 batch(es)" in first and "Verification" not in first

        started = time.perf_counter()
        second = _run("--batch-size", "500")
        second_seconds = time.perf_counter() - started
        # Plus one: the default platform account's key (workspaces.PlatformAccount) is re-encrypted with the rest.
        assert "5000 already current" in second and "5001 value(s) re-encrypted" in second
        assert f"Verification: {ROWS + 1} value(s) decrypt with the newest key" in second

    with override_settings(FIELD_ENCRYPTION_KEY=[new]):
        assert list(Secret.objects.order_by("id").values_list("value", flat=True)) == values
    with capsys.disabled():
        print(f"\n[rotation] {ROWS} rows: first run (interrupted after 10 batches of 500) {first_seconds:.2f} s, "
              f"resumed run {second_seconds:.2f} s, total {first_seconds + second_seconds:.2f} s")


def test_a_crash_mid_run_keeps_finished_batches_and_a_rerun_completes(workspace, monkeypatch):
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    _accounts_under(old)
    with override_settings(FIELD_ENCRYPTION_KEY=[old]):
        Secret.objects.bulk_create([Secret(workspace=workspace, name=f"s{i:03d}", value=f"val-{i}") for i in range(50)])
    real = reencrypt_fields.Command.rotate_batch
    calls = {"n": 0}

    def crash_on_third(self, target, rows, totals):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("worker killed")
        return real(self, target, rows, totals)

    with override_settings(FIELD_ENCRYPTION_KEY=[new, old]):
        monkeypatch.setattr(reencrypt_fields.Command, "rotate_batch", crash_on_third)
        with pytest.raises(RuntimeError):
            _run("--batch-size", "10")
        assert _under(new, _stored()) == 20  # two committed batches survive the crash
        monkeypatch.setattr(reencrypt_fields.Command, "rotate_batch", real)
        _run("--batch-size", "10")
    with override_settings(FIELD_ENCRYPTION_KEY=[new]):
        assert [s.value for s in Secret.objects.order_by("id")] == [f"val-{i}" for i in range(50)]


def test_every_encrypted_field_of_every_model_is_rotated(workspace, provider, settings):
    old, new = settings.FIELD_ENCRYPTION_KEY[0], Fernet.generate_key().decode()
    make_auth_connection(workspace, "b", "basic_auth", username="u", secrets={"password": "pw-Tr55"})
    make_vault_credential(workspace, provider, "u1", "at-Rr21", refresh_token="rt-Rr22")
    with override_settings(FIELD_ENCRYPTION_KEY=[new, old]):
        _run()
        assert primary_fernet().decrypt(_stored(UserCredential, "refresh_token")[0].encode()) == b"rt-Rr22"
    with override_settings(FIELD_ENCRYPTION_KEY=[new]):
        assert AuthConnection.objects.get().password == "pw-Tr55"
        assert OAuthProvider.objects.get().client_secret == "provider-client-secret-Zk41"
        credential = UserCredential.objects.get()
        assert (credential.access_token, credential.refresh_token) == ("at-Rr21", "rt-Rr22")


def test_unreadable_values_are_left_untouched_and_fail_verification(workspace, unrelated_key):
    lost = make_secret(workspace, name="lost", value="lost-value")
    before = _stored()
    new = Fernet.generate_key().decode()
    with override_settings(FIELD_ENCRYPTION_KEY=[new, unrelated_key]):
        with pytest.raises(CommandError) as caught:
            _run()
    assert f"secrets_app.Secret id {lost.pk} field value" in str(caught.value)
    assert "1 unreadable" not in str(caught.value)
    assert _stored() == before  # nothing lost: the token stays for whoever restores its key


def test_a_value_changed_during_rotation_is_not_overwritten(workspace, settings):
    secret = make_secret(workspace, value="first-value")
    old = settings.FIELD_ENCRYPTION_KEY[0]
    new = Fernet.generate_key().decode()
    target = next(t for t in reencrypt_fields.discover() if t.model is Secret)
    with override_settings(FIELD_ENCRYPTION_KEY=[new, old]):
        stale_rows = next(reencrypt_fields.scan(target, 100))  # read before the application writes
        Secret.objects.filter(pk=secret.pk).update(value="changed-meanwhile")
        reencrypt_fields.Command().rotate_batch(target, stale_rows, reencrypt_fields.Totals())
        assert Secret.objects.get(pk=secret.pk).value == "changed-meanwhile"


def test_verify_only_reports_values_not_yet_under_the_newest_key(workspace, settings):
    make_secret(workspace)
    old, newest = settings.FIELD_ENCRYPTION_KEY[0], Fernet.generate_key().decode()
    _accounts_under(newest)  # the default platform account's key is already under the newest key
    with override_settings(FIELD_ENCRYPTION_KEY=[newest, old]):
        with pytest.raises(CommandError, match="1 value"):
            _run("--verify-only")
        assert Secret.objects.get().value == "crm-value-Hq28-xx"


def test_rejects_bad_batch_size():
    with pytest.raises(CommandError):
        _run("--batch-size", "0")

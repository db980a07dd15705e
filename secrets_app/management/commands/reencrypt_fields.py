"""Re-encrypt every Keyward encrypted field with the newest key: ``manage.py reencrypt_fields [--batch-size N]``.

Rotation procedure (also in the README): put the new key FIRST in FIELD_ENCRYPTION_KEY and keep the old ones
after it, deploy, run this command, then remove the old keys.

- Discovers every model with a Keyward encrypted field (project.fields) through the app registry.
- Walks each table by primary key in batches; each batch is one transaction, so an interruption loses at
  most the batch in flight, and running the command again continues: a value the newest key can already
  decrypt is skipped (that check is the resume marker).
- Works on the stored tokens directly (``MultiFernet.rotate``), so no plaintext is built into model objects,
  logged or printed; each write is a compare-and-swap (``WHERE pk = … AND column = <old token>``), so a
  value the application changed meanwhile (already under the newest key) is never overwritten.
- A value no configured key can read is left untouched and reported; nothing is ever lost.
- Ends with a verification pass: every stored value must decrypt with the newest key alone; otherwise the
  command fails naming the rows.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from cryptography.fernet import InvalidToken
from django.apps import apps
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connections, models, router, transaction

from project.fields import configured_keys, crypter, encrypted_fields, primary_fernet


@dataclass
class Target:
    model: type[models.Model]
    columns: list[str]
    db: str

    @property
    def label(self) -> str:
        return self.model._meta.label


@dataclass
class Totals:
    rows: int = 0
    values: int = 0
    rotated: int = 0
    current: int = 0
    batches: int = 0
    unreadable: list[tuple[str, Any, str]] = field(default_factory=list)


def discover() -> list[Target]:
    targets = []
    for model in apps.get_models():
        fields = encrypted_fields(model)
        if fields and not model._meta.proxy and model._meta.managed:
            targets.append(Target(model, [f.column for f in fields], router.db_for_write(model)))
    return sorted(targets, key=lambda t: t.label)


def _as_text(value: Any) -> str:
    if isinstance(value, bytes | memoryview):
        return bytes(value).decode("utf-8")
    return str(value)


def scan(target: Target, batch_size: int) -> Iterator[list[tuple[Any, ...]]]:
    """(pk, *columns) rows in primary-key order, a batch at a time (keyset pagination: no OFFSET)."""
    connection = connections[target.db]
    q = connection.ops.quote_name
    pk = target.model._meta.pk.column
    columns = ", ".join(q(c) for c in target.columns)
    table = q(target.model._meta.db_table)
    first = f"SELECT {q(pk)}, {columns} FROM {table} ORDER BY {q(pk)} LIMIT %s"  # noqa: S608 - quoted names
    after = f"SELECT {q(pk)}, {columns} FROM {table} WHERE {q(pk)} > %s ORDER BY {q(pk)} LIMIT %s"  # noqa: S608
    last = None
    while True:
        with connection.cursor() as cursor:
            if last is None:
                cursor.execute(first, [batch_size])
            else:
                cursor.execute(after, [last, batch_size])
            rows = cursor.fetchall()
        if not rows:
            return
        yield rows
        last = rows[-1][0]


def row_count(target: Target) -> int:
    return target.model._base_manager.using(target.db).count()


class Command(BaseCommand):
    help = "Re-encrypt every encrypted field with the newest FIELD_ENCRYPTION_KEY, in batches; resumable; verifies."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--batch-size", type=int, default=500, help="rows per transaction (default 500)")
        parser.add_argument("--max-batches", type=int, default=None,
                            help="stop after this many batches (throttling); run again to continue")
        parser.add_argument("--verify-only", action="store_true", help="only check every value decrypts with the "
                                                                       "newest key")

    def handle(self, *args: Any, batch_size: int = 500, max_batches: int | None = None, verify_only: bool = False,
               **options: Any) -> None:
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1")
        if max_batches is not None and max_batches < 1:
            raise CommandError("--max-batches must be at least 1")
        keys = configured_keys()
        targets = discover()
        started = time.monotonic()
        self.stdout.write(f"{len(keys)} key(s) configured; the first encrypts. {len(targets)} model(s) with "
                          f"encrypted fields: {', '.join(t.label for t in targets) or 'none'}.")
        totals = Totals()
        if not verify_only:
            finished = self.rotate_all(targets, batch_size, max_batches, totals)
            elapsed = time.monotonic() - started
            self.stdout.write(f"Re-encryption: {totals.rows} rows checked, {totals.rotated} value(s) re-encrypted, "
                              f"{totals.current} already current, {len(totals.unreadable)} unreadable, "
                              f"{totals.batches} batch(es), {elapsed:.2f} s.")
            if not finished:
                self.stdout.write(self.style.WARNING(
                    f"Stopped after {totals.batches} batch(es) (--max-batches). Run the command again to continue; "
                    "finished batches are kept."))
                return
        verify_started = time.monotonic()
        checked, failures = self.verify(targets, batch_size)
        self.stdout.write(f"Verification: {checked} value(s) decrypt with the newest key "
                          f"({time.monotonic() - verify_started:.2f} s).")
        if failures:
            shown = "; ".join(f"{label} id {pk} field {column}" for label, pk, column in failures[:20])
            more = f" and {len(failures) - 20} more" if len(failures) > 20 else ""
            raise CommandError(f"{len(failures)} value(s) cannot be decrypted with the newest key: {shown}{more}. "
                               "They were left untouched; configure the key they were written with and run again.")
        self.stdout.write(self.style.SUCCESS(f"All encrypted values use the newest key. Total "
                                             f"{time.monotonic() - started:.2f} s."))

    # --- rotation ------------------------------------------------------------------------------------------
    def rotate_all(self, targets: list[Target], batch_size: int, max_batches: int | None, totals: Totals) -> bool:
        for target in targets:
            total = row_count(target)
            done = 0
            for rows in scan(target, batch_size):
                if max_batches is not None and totals.batches >= max_batches:
                    return False
                self.rotate_batch(target, rows, totals)
                totals.batches += 1
                done += len(rows)
                self.stdout.write(f"  {target.label}: {done}/{total} rows")
        return True

    def rotate_batch(self, target: Target, rows: list[tuple[Any, ...]], totals: Totals) -> None:
        """One transaction: rotate every value of these rows not already under the newest key."""
        newest, multi = primary_fernet(), crypter()
        connection = connections[target.db]
        q = connection.ops.quote_name
        table, pk = q(target.model._meta.db_table), q(target.model._meta.pk.column)
        updates: dict[str, list[tuple[str, Any, str]]] = {c: [] for c in target.columns}
        for row in rows:
            totals.rows += 1
            for column, raw in zip(target.columns, row[1:], strict=True):
                if raw is None:
                    continue
                totals.values += 1
                token = _as_text(raw).encode("utf-8")
                try:
                    newest.decrypt(token)
                    totals.current += 1
                    continue
                except InvalidToken:
                    pass
                try:
                    rotated = multi.rotate(token).decode("ascii")
                except InvalidToken:
                    totals.unreadable.append((target.label, row[0], column))
                    continue
                updates[column].append((rotated, row[0], _as_text(raw)))
        with transaction.atomic(using=target.db), connection.cursor() as cursor:
            for column, params in updates.items():
                if params:
                    # Compare-and-swap: a value changed since the read is already under the newest key.
                    sql = f"UPDATE {table} SET {q(column)} = %s WHERE {pk} = %s AND {q(column)} = %s"  # noqa: S608
                    cursor.executemany(sql, params)
                    totals.rotated += len(params)

    # --- verification -------------------------------------------------------------------------------------------
    def verify(self, targets: list[Target], batch_size: int) -> tuple[int, list[tuple[str, Any, str]]]:
        newest = primary_fernet()
        checked, failures = 0, []
        for target in targets:
            for rows in scan(target, batch_size):
                for row in rows:
                    for column, raw in zip(target.columns, row[1:], strict=True):
                        if raw is None:
                            continue
                        checked += 1
                        try:
                            newest.decrypt(_as_text(raw).encode("utf-8"))
                        except InvalidToken:
                            failures.append((target.label, row[0], column))
        return checked, failures

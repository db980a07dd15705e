"""``bulk_insert``: QuerySet.bulk_create for the hot paths that write tens of thousands of rows at once
(discovery's observations, adoption's objects and their audit events).

It writes the same rows with the same SQL as ``bulk_create`` (multi-row INSERT, ``ON CONFLICT … DO UPDATE`` for an
upsert, ``RETURNING`` the primary keys, which are set on the objects), but prepares the values with far less
work per value: Django's insert compiler wraps every value of every row in several calls (expression checks,
``pre_save``, ``get_db_prep_save``, a placeholder per value), which costs most of a large adoption's time. Here a
plain string, integer or boolean in a field that stores it as is goes straight to the driver, and every other value
(dates, JSON, encrypted fields, anything unusual) takes the field's own ``pre_save`` and ``get_db_prep_save``, as
Django would. No signals, as with ``bulk_create``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from django.db import connections, models, router
from django.db.models.constants import OnConflict

# Field classes whose database value is the Python value itself for these exact value types.
_AS_IS: dict[type[models.Field], tuple[type, ...]] = {
    models.CharField: (str,),
    models.TextField: (str,),
    models.SlugField: (str,),
    models.BooleanField: (bool,),
    models.IntegerField: (int,),
    models.BigIntegerField: (int,),
    models.PositiveIntegerField: (int,),
    models.PositiveSmallIntegerField: (int,),
    models.PositiveBigIntegerField: (int,),
    models.SmallIntegerField: (int,),
}
_AUTO = (models.AutoField, models.BigAutoField, models.SmallAutoField)


def _plain_types(field: models.Field) -> tuple[type, ...]:
    """The value types written as they are for this field (empty: always through the field)."""
    if isinstance(field, models.ForeignKey):
        target = field.target_field
        return (int,) if type(target) in _AUTO else ()
    if type(field) in (models.DateTimeField, models.DateField) and (field.auto_now or field.auto_now_add):
        return ()
    return _AS_IS.get(type(field), ())


def bulk_insert(model: type[models.Model], objs: Sequence[models.Model], *, batch_size: int = 500,
                update_conflicts: bool = False, unique_fields: Iterable[str] = (),
                update_fields: Iterable[str] = ()) -> None:
    """Insert ``objs`` (instances of ``model``, not saved yet); with ``update_conflicts`` rows that clash on
    ``unique_fields`` get ``update_fields`` from the new row instead (their primary keys are not read back).
    Otherwise each object gets its primary key, as ``bulk_create`` sets it."""
    if not objs:
        return
    meta = model._meta
    if meta.parents:
        raise ValueError("bulk_insert does not write multi-table inherited models")
    db = router.db_for_write(model)
    connection = connections[db]
    ops = connection.ops
    pk = meta.pk
    auto_pk = type(pk) in _AUTO
    for obj in objs:
        obj._prepare_related_fields_for_save(operation_name="bulk_insert")
        if obj.pk is None and not auto_pk:
            obj.pk = pk.get_pk_value_on_save(obj)
    if auto_pk and any(obj.pk is not None for obj in objs):
        raise ValueError("bulk_insert writes new rows only: an object already has a primary key")
    fields = [f for f in meta.concrete_fields if not (auto_pk and f is pk)]
    plain = [_plain_types(f) for f in fields]
    conflict = ""
    if update_conflicts:
        unique_columns = [meta.get_field(name).column for name in unique_fields]
        update_columns = [meta.get_field(name).column for name in update_fields]
        conflict = ops.on_conflict_suffix_sql(fields, OnConflict.UPDATE, update_columns, unique_columns)
    returning = ""
    if auto_pk and not update_conflicts:
        if not connection.features.can_return_rows_from_bulk_insert:
            raise NotImplementedError("bulk_insert needs a database that returns the rows it inserts")
        returning = f" RETURNING {ops.quote_name(pk.column)}"
    table = ops.quote_name(meta.db_table)
    columns = ", ".join(ops.quote_name(f.column) for f in fields)
    row_sql = "(" + ", ".join(["%s"] * len(fields)) + ")"
    size = max(1, min(batch_size, ops.bulk_batch_size(fields, objs)))
    with connection.cursor() as cursor:
        for start in range(0, len(objs), size):
            batch = objs[start:start + size]
            params: list[Any] = []
            for obj in batch:
                for field, types in zip(fields, plain, strict=True):
                    value = getattr(obj, field.attname)
                    if value is None or type(value) not in types:
                        value = field.get_db_prep_save(field.pre_save(obj, True), connection)
                    params.append(value)
            sql = (f"INSERT INTO {table} ({columns}) VALUES {', '.join([row_sql] * len(batch))}"  # noqa: S608
                   f"{f' {conflict}' if conflict else ''}{returning}")
            cursor.execute(sql, params)
            if returning:
                for obj, row in zip(batch, cursor.fetchall(), strict=True):
                    setattr(obj, pk.attname, row[0])
            for obj in batch:
                obj._state.adding = False
                obj._state.db = db

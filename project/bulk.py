"""``bulk_insert``: QuerySet.bulk_create for the hot paths that write tens of thousands of rows at once
(discovery's observations, adoption's objects and their audit events).

It writes the same rows with the same SQL as ``bulk_create`` (multi-row INSERT, on PostgreSQL from one array per
column with UNNEST; ``ON CONFLICT … DO UPDATE`` for an upsert, ``RETURNING`` the primary keys, which are set on the
objects), but prepares the values with far less
work per value: Django's insert compiler wraps every value of every row in several calls (expression checks,
``pre_save``, ``get_db_prep_save``, a placeholder per value), which costs most of a large adoption's time. Here a
None, a string, an integer or a boolean in a plain field of that type goes straight to the driver, an aware datetime
takes only the backend's adaptation, an ``auto_now``/``auto_now_add`` field gets one time per statement (set on the
objects, as ``pre_save`` would set each), and every other value (JSON, encrypted fields, subclassed fields, anything
unusual) takes the field's own ``pre_save`` and ``get_db_prep_save``, as Django would. No signals, as with
``bulk_create``.

``build``: a model's constructor for the same hot paths (audit events, alerts), without its per-field work.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from django.db import connections, models, router
from django.db.models.base import ModelState
from django.db.models.constants import OnConflict
from django.utils import timezone

_TEXT = (models.CharField, models.TextField, models.SlugField)
_INTEGER = (models.IntegerField, models.BigIntegerField, models.PositiveIntegerField, models.PositiveSmallIntegerField,
            models.PositiveBigIntegerField, models.SmallIntegerField)
_AUTO = (models.AutoField, models.BigAutoField, models.SmallAutoField)


def _converter(field: models.Field, connection: Any) -> Any:
    """How a value of this field reaches the driver: a function of the value for the values that need no more than
    the field itself would do, or None (the field's own pre_save and get_db_prep_save, for every value)."""
    kind = type(field)
    if isinstance(field, models.ForeignKey):
        kind = type(field.target_field)
        if kind not in _AUTO:
            return None
        return lambda value: value if value is None or type(value) is int else _FIELD
    if kind in _TEXT:  # CharField.to_python keeps a str (a TextChoices member included) as it is
        return lambda value: value if value is None or isinstance(value, str) else _FIELD
    if kind in _INTEGER:  # not a bool: the field would store int(True)
        return lambda value: value if value is None or type(value) is int else _FIELD
    if kind is models.BooleanField:
        return lambda value: value if value is None or type(value) is bool else _FIELD
    if kind is models.DateTimeField and (field.auto_now or field.auto_now_add):
        return _NOW
    if kind is models.DateTimeField:
        adapt = connection.ops.adapt_datetimefield_value
        # An aware datetime: what get_prep_value keeps as it is, adapted as get_db_prep_value does.
        return lambda value: (value if value is None
                              else adapt(value) if type(value) is datetime and value.tzinfo is not None else _FIELD)
    return None


def _unnest_types(fields: list[models.Field], connection: Any) -> list[str] | None:
    """On PostgreSQL, the array type of each column for ``INSERT … SELECT * FROM UNNEST(%s::type[], …)``: one
    parameter per column, however many rows. The driver turns every placeholder of a statement into text before
    sending it, which for a batch with one placeholder per value cost more than the database's own work. None where
    Django's bulk_create would not use UNNEST either (not PostgreSQL, a field with its own placeholder, a type
    outside the backend's standard ones, such as arrays)."""
    if connection.vendor != "postgresql":
        return None
    types = []
    for field in fields:
        target = field.target_field if field.is_relation else field
        if hasattr(field, "get_placeholder") or target.get_internal_type() not in connection.data_types:
            return None
        types.append(field.db_type(connection).split("(")[0])  # varchar[], not varchar(50)[]: nothing is cut
    return types


_FIELD = object()  # a converter's answer: this value goes through the field
_NOW = object()  # a converter: an auto_now(_add) field, stamped with the statement's one time (see bulk_insert)


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
    converters = [_converter(f, connection) for f in fields]
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
    unnest = _unnest_types(fields, connection)
    arrays_sql = ", ".join(f"(%s)::{db_type}[]" for db_type in unnest) if unnest else ""
    size = max(1, min(batch_size, ops.bulk_batch_size(fields, objs)))
    with connection.cursor() as cursor:
        for start in range(0, len(objs), size):
            batch = objs[start:start + size]
            params: list[Any] = []
            # The rows of one statement are created (or changed) at one time: what pre_save would set on each.
            now = timezone.now()
            stamp = ops.adapt_datetimefield_value(now)
            for obj in batch:
                for field, convert in zip(fields, converters, strict=True):
                    if convert is _NOW:
                        setattr(obj, field.attname, now)
                        params.append(stamp)
                        continue
                    value = _FIELD if convert is None else convert(getattr(obj, field.attname))
                    if value is _FIELD:
                        value = field.get_db_prep_save(field.pre_save(obj, True), connection)
                    params.append(value)
            if unnest and len(batch) > 1:
                # The same rows as one array per column (values in row order; RETURNING gives the ids in that order,
                # as Django's bulk_create relies on too).
                width = len(fields)
                params = [params[column::width] for column in range(width)]
                values = f"SELECT * FROM UNNEST({arrays_sql})"  # noqa: S608 - types from the models
            else:
                values = f"VALUES {', '.join([row_sql] * len(batch))}"
            sql = (f"INSERT INTO {table} ({columns}) {values}"  # noqa: S608
                   f"{f' {conflict}' if conflict else ''}{returning}")
            cursor.execute(sql, params)
            if returning:
                for obj, row in zip(batch, cursor.fetchall(), strict=True):
                    setattr(obj, pk.attname, row[0])
            for obj in batch:
                obj._state.adding = False
                obj._state.db = db


class _Blueprint:
    """What ``build`` needs to know of a model, read once: each concrete field's constant default (or the callable
    that makes it), the attribute names, and the foreign keys by name."""

    __slots__ = ("static", "dynamic", "attnames", "relations")

    def __init__(self, model: type[models.Model]) -> None:
        self.static: dict[str, Any] = {}
        self.dynamic: list[tuple[str, Any]] = []
        self.attnames: set[str] = set()
        self.relations: dict[str, models.Field] = {}
        for f in model._meta.concrete_fields:
            self.attnames.add(f.attname)
            if f.is_relation and f.many_to_one:
                self.relations[f.name] = f
            if f.has_default() and callable(f.default):
                self.dynamic.append((f.attname, f.default))
            else:
                self.static[f.attname] = f.get_default()


_BLUEPRINTS: dict[type[models.Model], _Blueprint] = {}


def build(model: type[models.Model], /, **values: Any) -> Any:
    """``model(**values)`` for the hot paths that build tens of thousands of unsaved rows (audit events, alerts):
    the same attributes, defaults and cached related objects, without ``Model.__init__``'s per-field work. Values
    are given by attribute name (``workspace_id``) or, for a foreign key, by name with an instance or None
    (``actor_user=user``); anything else is a TypeError, as in the constructor. No pre_init/post_init signals
    (models built here have no receivers of them)."""
    blueprint = _BLUEPRINTS.get(model)
    if blueprint is None:
        blueprint = _BLUEPRINTS[model] = _Blueprint(model)
    obj = model.__new__(model)
    state = obj._state = ModelState()
    attributes = obj.__dict__
    attributes.update(blueprint.static)
    for attname, make in blueprint.dynamic:
        if attname not in values:
            attributes[attname] = make()
    for name, value in values.items():
        if name in blueprint.attnames:
            attributes[name] = value
        elif name in blueprint.relations:
            relation = blueprint.relations[name]
            attributes[relation.attname] = None if value is None else getattr(value, relation.target_field.attname)
            state.fields_cache[name] = value
        else:
            raise TypeError(f"{model.__name__}() got an unexpected keyword argument '{name}'")
    return obj

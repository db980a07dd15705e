"""Hand-written SELECTs for the session API's hot path, turned into model instances the ORM way.

Building a query through the ORM costs far more than running it (an indexed lookup by digest runs in tens of
microseconds; compiling a select_related query for it takes ~10 times that). The per-request reads of the
broker (the key with its service account and environment, the agent with its "allowed" flag) are therefore
written once as SQL, per database vendor, from the models' own metadata, and their rows pass through the
same converters the ORM applies before ``Model.from_db`` builds the instances.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from typing import Any

from django.db import connections
from django.db.models import Field, Model

Converter = Callable[[Any, Any, Any], Any]


def _qn(name: str, alias: str) -> str:
    return connections[alias].ops.quote_name(name)


# Per connection object (each thread has its own): the backend's converters are bound to it.
_plans: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _converters(model: type[Model], table_alias: str, alias: str) -> tuple[list[Field], list[list[tuple]]]:
    connection = connections[alias]
    plans = _plans.setdefault(connection, {})
    plan = plans.get((model, table_alias))
    if plan is None:
        fields = list(model._meta.concrete_fields)
        converters = []
        for field in fields:
            column = field.get_col(table_alias)
            converters.append([(c, column) for c in connection.ops.get_db_converters(column)
                               + field.get_db_converters(connection)])
        plan = plans[(model, table_alias)] = (fields, converters)
    return plan


def columns(model: type[Model], table_alias: str, alias: str = "default") -> str:
    fields, _ = _converters(model, table_alias, alias)
    return ", ".join(f"{table_alias}.{_qn(f.column, alias)}" for f in fields)


def table(model: type[Model], alias: str = "default") -> str:
    return _qn(model._meta.db_table, alias)


def build(model: type[Model], table_alias: str, values: Sequence[Any], alias: str = "default") -> Model:
    fields, converters = _converters(model, table_alias, alias)
    connection = connections[alias]
    converted = []
    for value, field_converters in zip(values, converters, strict=True):
        for converter, expression in field_converters:
            value = converter(value, expression, connection)
        converted.append(value)
    return model.from_db(alias, [f.attname for f in fields], converted)


def width(model: type[Model], table_alias: str, alias: str = "default") -> int:
    return len(_converters(model, table_alias, alias)[0])


def fetch_one(sql: str, params: Sequence[Any], alias: str = "default") -> tuple | None:
    with connections[alias].cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()


def execute(sql: str, params: Sequence[Any], alias: str = "default") -> int:
    with connections[alias].cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount

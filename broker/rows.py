"""Hand-written SELECTs for the session API's hot path, turned into model instances the ORM way.

Building a query through the ORM costs far more than running it (an indexed lookup by digest runs in tens of
microseconds; compiling a select_related query for it takes ~10 times that). The per-request reads of the
broker (the key with its service account and environment, the agent with its "allowed" flag) are therefore
written once as SQL, per database vendor, from the models' own metadata, and their rows pass through the
same converters the ORM applies before ``Model.from_db`` builds the instances.

On PostgreSQL these statements also run as server-side prepared statements (``BROKER_PREPARED_STATEMENTS``,
on by default): planning the key lookup's three-table join costs more than running it (measured here: 0.95 ms
a lookup unprepared, 0.38 ms prepared). Django's own cursors bind parameters on the client and never prepare;
only these few fixed statements do, through the same Django cursor wrapper (query logging, error wrapping and
execute wrappers still apply). Behind PgBouncer in transaction mode this needs PgBouncer 1.21 or later with
``max_prepared_statements`` set, or the setting off.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from typing import Any

from django.conf import settings
from django.db import InterfaceError, OperationalError, connections, transaction
from django.db.backends.utils import CursorWrapper
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


_prepared_cursor_class: type | None = None


def _prepared_cursor() -> type:
    """A psycopg cursor that binds on the server and prepares every statement it runs (created on first use:
    psycopg is only imported where PostgreSQL is the database)."""
    global _prepared_cursor_class
    if _prepared_cursor_class is None:
        import psycopg

        class PreparedCursor(psycopg.Cursor):
            log_queries = False

            def execute(self, query: Any, params: Any = None, *, prepare: bool | None = None,
                        binary: bool | None = None) -> Any:
                result = super().execute(query, params, prepare=True, binary=binary)
                if self.log_queries and self._query is None:
                    # psycopg keeps the executed query only when it did not prepare it; Django's query log
                    # (connection.queries, CaptureQueriesContext, the SQL debug log) reads it from there.
                    self._query = self._convert_query(query, params)
                return result

        _prepared_cursor_class = PreparedCursor
    return _prepared_cursor_class


def cursor(alias: str = "default") -> CursorWrapper:
    """A Django cursor for the hot-path statements: prepared on PostgreSQL, the ordinary one elsewhere."""
    wrapper = connections[alias].cursor()  # health check, connection, thread check, debug wrapper: Django's
    if wrapper.db.vendor == "postgresql" and getattr(settings, "BROKER_PREPARED_STATEMENTS", True):
        try:
            import psycopg  # noqa: F401 - psycopg2 cannot prepare; keep its cursor
        except ImportError:
            return wrapper
        raw = wrapper.db.connection
        if raw.prepare_threshold is None:
            # Django connects with prepare_threshold=None, which turns preparation off even for an explicit
            # prepare=True. Its own cursors bind on the client and never prepare, so a threshold no statement
            # reaches lets exactly these explicit ones through.
            raw.prepare_threshold = 2**31
        wrapper.cursor.close()
        wrapper.cursor = _prepared_cursor()(raw)
        wrapper.cursor.log_queries = wrapper.db.queries_logged
    return wrapper


def _insert_plan(model: type[Model], alias: str) -> tuple[list[Field], str]:
    connection = connections[alias]
    plans = _plans.setdefault(connection, {})
    plan = plans.get((model, "insert"))
    if plan is None:
        fields = [f for f in model._meta.concrete_fields if f is not model._meta.auto_field]
        sql = (f"INSERT INTO {table(model, alias)} ({', '.join(_qn(f.column, alias) for f in fields)}) "  # noqa: S608 - names from model metadata
               f"VALUES ({', '.join(['%s'] * len(fields))})")
        plan = plans[(model, "insert")] = (fields, sql)
    return plan


def insert(*instances: Model, alias: str = "default") -> None:
    """Insert new model instances all or none, the way Model.save() would fill and convert their fields
    (defaults, auto_now_add, the backend's value preparation), without compiling ORM queries. Primary keys
    are not read back. On PostgreSQL the rows go in one statement (data-modifying WITH clauses: one round
    trip, atomic like any statement); elsewhere in one transaction."""
    connection = connections[alias]
    statements, params = [], []
    for instance in instances:
        fields, sql = _insert_plan(type(instance), alias)
        statements.append(sql)
        params.append([f.get_db_prep_save(f.pre_save(instance, True), connection) for f in fields])
    if connection.vendor == "postgresql":
        head = ", ".join(f"i{n} AS ({sql})" for n, sql in enumerate(statements[:-1]))
        execute((f"WITH {head} " if head else "") + statements[-1], [p for row in params for p in row], alias)
        return
    with transaction.atomic(using=alias):
        for sql, values in zip(statements, params, strict=True):
            execute(sql, values, alias)


def fetch_one(sql: str, params: Sequence[Any], alias: str = "default") -> tuple | None:
    with cursor(alias) as c:
        c.execute(sql, params)
        return c.fetchone()


def first_read(sql: str, params: Sequence[Any], alias: str = "default") -> tuple | None:
    """A request's first statement, a read, standing in for Django's connection health check.

    With CONN_HEALTH_CHECKS Django sends ``SELECT 1`` on a reused connection before a request's first statement: one
    more round trip on every request. This read is that check instead: when the reused connection turns out dead
    (the server restarted, a proxy dropped it), it is closed and the read runs once more on a new connection, which
    is what the health check would have led to. A database that is really down fails the second read too, and the
    caller fails closed. Inside a transaction (nothing to reconnect) or on a fresh connection it is a plain read.
    """
    connection = connections[alias]
    checking = (connection.health_check_enabled and not connection.health_check_done
                and connection.connection is not None and not connection.in_atomic_block)
    if not checking:
        return fetch_one(sql, params, alias)
    connection.health_check_done = True
    try:
        return fetch_one(sql, params, alias)
    except (OperationalError, InterfaceError):
        connection.close()
        return fetch_one(sql, params, alias)


def execute(sql: str, params: Sequence[Any], alias: str = "default") -> int:
    with cursor(alias) as c:
        c.execute(sql, params)
        return c.rowcount

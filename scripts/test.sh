#!/usr/bin/env bash
# Runs every test. Uses DATABASE_URL when set; otherwise the local PostgreSQL if it answers, else SQLite.
set -uo pipefail
cd "$(dirname "$0")/.."
if [ -z "${DATABASE_URL:-}" ]; then
  if .venv/bin/python - <<'PY' 2>/dev/null
import psycopg
psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=postgres", connect_timeout=2).close()
PY
  then
    export DATABASE_URL="postgres://postgres@127.0.0.1:5432/keyward"
  else
    echo "PostgreSQL not reachable on 127.0.0.1:5432: running the tests on SQLite"
  fi
fi
echo "Test database: ${DATABASE_URL:-sqlite}"
export DEBUG=true
# The floors of README's "Architecture" (pyproject's [tool.importlinter]): an upward import fails the run.
.venv/bin/lint-imports --no-cache --no-logo > /dev/null || { .venv/bin/lint-imports --no-cache --no-logo; exit 1; }
.venv/bin/pytest "$@"
status=$?
# pytest exits 5 when it collected nothing: that is a failure for us, not a pass.
exit $status

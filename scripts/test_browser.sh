#!/usr/bin/env bash
# The browser suite (tests/e2e): Playwright (Python) driving Debian's chromium against a live Keyward on
# PostgreSQL. Installs what it needs first: Debian's chromium via apt-get when /usr/bin/chromium is missing (as
# root; otherwise it says what to run), and Playwright from the dev extra. Never downloads a browser: Playwright
# launches /usr/bin/chromium (or E2E_CHROMIUM).
set -uo pipefail
cd "$(dirname "$0")/.."
CHROMIUM="${E2E_CHROMIUM:-/usr/bin/chromium}"

if [ ! -x "$CHROMIUM" ]; then
  if [ "$(id -u)" -eq 0 ]; then
    echo "Installing Debian's chromium (apt-get install chromium)..."
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }; then
      echo "apt-get could not install chromium: install it by hand, then run make test-browser again" >&2
      exit 2
    fi
  else
    echo "Debian's chromium is not installed ($CHROMIUM missing) and this is not root." >&2
    echo "Run: sudo apt-get update && sudo apt-get install chromium   (or set E2E_CHROMIUM to a Chromium binary)" >&2
    exit 2
  fi
fi

if ! .venv/bin/python -c "import playwright" 2>/dev/null; then
  echo "Installing Playwright (pip, the dev extra)..."
  .venv/bin/python -m pip install --quiet -e '.[dev]' || exit 2
fi

if [ -z "${DATABASE_URL:-}" ]; then
  export DATABASE_URL="postgres://postgres@127.0.0.1:5432/keyward"
fi
case "$DATABASE_URL" in
  postgres://*|postgresql://*|pgsql://*) ;;
  *) echo "The browser suite runs against PostgreSQL: set DATABASE_URL=postgres://... (got $DATABASE_URL)" >&2
     exit 2 ;;
esac
if ! .venv/bin/python - <<'PY' 2>/dev/null
import os
import psycopg
from urllib.parse import urlsplit
url = urlsplit(os.environ["DATABASE_URL"])
psycopg.connect(host=url.hostname or "127.0.0.1", port=url.port or 5432, user=url.username or "postgres",
                password=url.password, dbname="postgres", connect_timeout=3).close()
PY
then
  echo "PostgreSQL does not answer at $DATABASE_URL: start it (pg_ctlcluster ... main start) or set DATABASE_URL" >&2
  exit 2
fi
# A test database of its own, so this suite and `make test` can run side by side on one server.
export TEST_DATABASE_NAME="${TEST_DATABASE_NAME:-test_keyward_e2e}"
export DEBUG=true
echo "Browser: $CHROMIUM ($("$CHROMIUM" --version 2>/dev/null | head -1)); database: $DATABASE_URL ($TEST_DATABASE_NAME)"
E2E_CHROMIUM="$CHROMIUM" .venv/bin/pytest -m e2e "$@"

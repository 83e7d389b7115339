#!/usr/bin/env bash
# Set up, lint, then run the whole suite on SQLite and, when it answers, on MariaDB.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy

echo "== test suite on SQLite"
APP_TEST_DB=sqlite .venv/bin/pytest "$@"

if .venv/bin/python -c 'import socket; socket.create_connection(("127.0.0.1", 3306), 1)' 2>/dev/null
then
  echo "== test suite on MariaDB (127.0.0.1:3306)"
  APP_TEST_DB=mariadb .venv/bin/pytest "$@"
else
  echo "== MariaDB is not answering on 127.0.0.1:3306: the MariaDB run is SKIPPED"
fi

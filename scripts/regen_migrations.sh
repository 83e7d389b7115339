#!/usr/bin/env bash
# Rebuild the single initial migration from the models (only while nothing is released).
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-python}
[ -x /work/venv/bin/python ] && [ -z "${PYTHON:-}" ] && py=/work/venv/bin/python
tmp=$(mktemp -d)
rm -f backend/migrations/0*.py
TORTOISE_CLI=1 APP_DATA_DIR="$tmp" APP_DATABASE_URL="sqlite://$tmp/mk.sqlite3" \
  "$py" -m tortoise makemigrations >/dev/null
rm -rf "$tmp"
ls backend/migrations/0*.py

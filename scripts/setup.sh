#!/usr/bin/env bash
# Create .venv with the service, its command line and the test tools; reused when present.
set -euo pipefail
cd "$(dirname "$0")/.."
py=$(command -v python3.11 || command -v python3)
if [ ! -x .venv/bin/python ]; then
  "$py" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[test]'

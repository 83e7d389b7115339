#!/usr/bin/env bash
# Set up, then seed and start the demo: the WeChat stand-in and the server on loopback.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/vetsvc demo "$@"

#!/usr/bin/env bash
# Set everything up on a fresh machine and run the main job on the embedded stack.
# Extra arguments go to `stream demo` (see `stream demo --help`).
set -euo pipefail
cd "$(dirname "$0")"
scripts/setup.sh
exec .venv/bin/stream demo "$@"

#!/usr/bin/env bash
# Set everything up and run the whole test suite (unit, contract, integration against a real
# Tansu broker and a real Valkey server that the fixtures start on free ports and stop).
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")"
scripts/setup.sh
exec .venv/bin/python -m pytest "$@"

#!/usr/bin/env bash
# Create .venv (Python 3.11) and install the project with the embedded stack and test extras.
# Idempotent: a second run only checks. Needs nothing but python3.11 with venv and PyPI access.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
if ! "$PY" -c 'import sys; sys.exit(0 if sys.version_info[:2] in ((3, 11), (3, 12)) else 1)'; then
  echo "setup: error: Python 3.11 or 3.12 is required (found $("$PY" --version 2>&1))" >&2
  exit 1
fi
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv with $("$PY" --version)" >&2
  "$PY" -m venv .venv
fi
stamp=.venv/.stream-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "setup: installing stream[embedded,test] into .venv" >&2
  .venv/bin/python -m pip install --quiet --upgrade pip >&2
  .venv/bin/python -m pip install --quiet -e '.[embedded,test]' >&2
  touch "$stamp"
fi
# promtool (from Debian's prometheus package) checks the metrics exposition and alert rules in
# tests, amtool (prometheus-alertmanager) the Alertmanager config, docker-compose (v1) validates
# docker-compose.yml, chromium (headless) loads the `stream dashboard` page; install them when we can (root + apt),
# otherwise those checks are reported as skipped.
missing=()
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
command -v amtool >/dev/null 2>&1 || missing+=(prometheus-alertmanager)
command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
if [ ${#missing[@]} -gt 0 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "setup: installing ${missing[*]} (apt) for the deployment checks" >&2
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}") \
    >/dev/null 2>&1 || echo "setup: warning: could not install ${missing[*]}; their checks will be skipped" >&2
fi
echo "setup: ready ($(.venv/bin/python --version), $(.venv/bin/stream --help >/dev/null && echo 'stream CLI ok'))" >&2

#!/usr/bin/env bash
# Create/reuse app_src/.venv-test, install the package (as a wheel would be installed, not
# editable) and the test requirements, then run the pytest suite. Extra args go to pytest.
# The suite starts its own PostgreSQL and Redis servers: run install-test-deps.sh first.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$here/.venv-test"
python="${PYTHON:-python3}"

if [ ! -x "$venv/bin/python" ]; then
  "$python" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
  -r "$here/requirements-test.txt" "$here"
# Reinstall the package itself every run so the tests see the current source.
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
  --force-reinstall --no-deps "$here"

cd "$here"
exec "$venv/bin/python" -m pytest "$@"

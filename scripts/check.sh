#!/usr/bin/env bash
# What CI runs: lint, types, then the README's test command. Run it before every commit.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
"$PY" -m ruff check internal tests cmd scripts
"$PY" -m mypy
"$PY" -m pytest -q

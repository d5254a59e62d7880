#!/usr/bin/env bash
# Set up (see setup.sh) and run the checks CI runs before the tests: lint, format, types, and the
# docs site built strictly (a broken link or a missing page fails).
# `bash scripts/check.sh --fix` applies the lint fixes and the formatting instead of checking.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
paths=(benchmarks datasets methods tests scripts)
if [ "${1:-}" = "--fix" ]; then
    .venv/bin/ruff check --fix "${paths[@]}"
    .venv/bin/ruff format "${paths[@]}"
    exit 0
fi
.venv/bin/ruff check "${paths[@]}"
.venv/bin/ruff format --check "${paths[@]}"
.venv/bin/mypy
site=$(mktemp -d)
NO_MKDOCS_2_WARNING=1 .venv/bin/mkdocs build --strict --quiet --site-dir "$site"
rm -rf "$site"

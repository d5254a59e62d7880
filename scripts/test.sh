#!/usr/bin/env bash
# Set up (see setup.sh) and run the test suite. Extra arguments go to pytest.
# Omniglot is read from $FEWSHOT_DATA_ROOT, by default ../shared/data when that exists.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ -z "${FEWSHOT_DATA_ROOT:-}" ] && [ -d ../shared/data ]; then
    export FEWSHOT_DATA_ROOT="$(cd ../shared/data && pwd)"
fi
exec .venv/bin/python -m pytest "$@"

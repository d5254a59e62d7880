#!/usr/bin/env bash
# Set up (see setup.sh) and run the benchmark. Arguments go to `python -m benchmarks.run`;
# without any, it runs the main job: relnet and protonet, quick preset, Omniglot 5-way 1/5-shot.
# Data: $FEWSHOT_DATA_ROOT, else ../shared/data when that exists, else ./data (downloaded).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh ""  # running needs no extras
if [ -z "${FEWSHOT_DATA_ROOT:-}" ] && [ -d ../shared/data/omniglot ]; then
    export FEWSHOT_DATA_ROOT="$(cd ../shared/data && pwd)"
fi
if [ "$#" -eq 0 ]; then
    set -- --methods relnet protonet
fi
exec .venv/bin/python -m benchmarks.run "$@"

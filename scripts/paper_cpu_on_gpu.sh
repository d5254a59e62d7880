#!/usr/bin/env bash
# The paper-cpu preset on one GPU, as committed in results/omniglot/vinyals-paper-cpu-gpu*:
# the Omniglot runs of scripts/runs/omniglot-paper-cpu.runs (relnet, protonet and matchnet, with
# two ablations of the Matching Networks scale) train concurrently on the GPU, then each is
# tested alone (see scripts/train_concurrently.sh).
#
#   bash scripts/paper_cpu_on_gpu.sh [OUT]        # OUT defaults to results
#
# Environment: EXTRA (more flags for every command, e.g. "--train-episodes 20" for a smoke test),
# and those of scripts/train_concurrently.sh (DEVICE, PYTHON, TEST_EPISODES, WORK).
set -euo pipefail
cd "$(dirname "$0")/.."
COMMON="--preset paper-cpu --ways 5 20 ${EXTRA:-}" exec bash scripts/train_concurrently.sh \
    scripts/runs/omniglot-paper-cpu.runs "$@"

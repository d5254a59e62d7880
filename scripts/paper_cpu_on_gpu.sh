#!/usr/bin/env bash
# The paper-cpu preset on one GPU, as committed in results/omniglot/vinyals-paper-cpu-gpu*:
# the Omniglot runs of relnet, protonet and matchnet (with two ablations of the Matching
# Networks scale) train concurrently on the GPU; then each command runs again alone, finds its
# trained model among the checkpoints and only tests it, so test timings are not shared.
# Training times in the records are those of the concurrent training (an upper bound).
#
#   bash scripts/paper_cpu_on_gpu.sh [OUT]        # OUT defaults to results
#
# Environment: DEVICE (default cuda), PYTHON (default python), EXTRA (more flags for every
# command, e.g. "--train-episodes 20" for a smoke test), TEST_EPISODES (default 600), WORK (the
# folder for the concurrent phase, default a new temporary folder); the data root and cache
# are found as for any run ($FEWSHOT_DATA_ROOT, $FEWSHOT_CACHE_DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-results}
DEVICE=${DEVICE:-cuda}
PYTHON=${PYTHON:-python}
EXTRA=${EXTRA:-}
TEST_EPISODES=${TEST_EPISODES:-600}
WORK=${WORK:-$(mktemp -d)}
mkdir -p "$WORK"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

declare -A RUNS=(
  [relnet-1shot]="--methods relnet --shots 1"
  [relnet-5shot]="--methods relnet --shots 5"
  [protonet]="--methods protonet --shots 1 5"
  [matchnet-1shot]="--methods matchnet --shots 1"
  [matchnet-5shot]="--methods matchnet --shots 5"
  [matchnet-fixed-scale-1shot]="--methods matchnet --shots 1 --options matchnet.learn_temperature=false"
  [matchnet-fixed-scale-5shot]="--methods matchnet --shots 5 --options matchnet.learn_temperature=false"
  [matchnet-support-normalized-1shot]="--methods matchnet --shots 1 --options matchnet.learn_temperature=false matchnet.similarity=support-normalized matchnet.temperature=1"
  [matchnet-support-normalized-5shot]="--methods matchnet --shots 5 --options matchnet.learn_temperature=false matchnet.similarity=support-normalized matchnet.temperature=1"
)
# longest first, so the concurrent phase ends soonest
ORDER=(relnet-1shot matchnet-1shot matchnet-fixed-scale-1shot matchnet-support-normalized-1shot
       matchnet-5shot matchnet-fixed-scale-5shot matchnet-support-normalized-5shot relnet-5shot protonet)

run() {  # run NAME OUT_DIR TEST_EPISODES
  # shellcheck disable=SC2086  # the flags are meant to split into words
  "$PYTHON" -m benchmarks.run --preset paper-cpu --ways 5 20 --device "$DEVICE" --quiet \
      --test-episodes "$3" --out "$2" ${RUNS[$1]} $EXTRA
}

echo "training ${#ORDER[@]} runs concurrently on $DEVICE (logs in $WORK)"
start=$SECONDS
pids=()
for name in "${ORDER[@]}"; do
  run "$name" "$WORK/$name" 2 > "$WORK/$name.log" 2>&1 &
  pids+=($!)
done
failed=0
for i in "${!ORDER[@]}"; do
  if ! wait "${pids[$i]}"; then
    echo "training ${ORDER[$i]} failed; see $WORK/${ORDER[$i]}.log" >&2
    failed=1
  fi
done
echo "concurrent training took $(( SECONDS - start )) s"

mkdir -p "$OUT/omniglot/checkpoints"
cp "$WORK"/*/omniglot/checkpoints/*.pt "$OUT/omniglot/checkpoints/" 2>/dev/null || true
for name in "${ORDER[@]}"; do
  echo "testing $name alone"
  run "$name" "$OUT" "$TEST_EPISODES" || failed=1
done
exit $failed

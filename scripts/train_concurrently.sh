#!/usr/bin/env bash
# Several benchmark runs trained concurrently on one device, then tested one at a time.
#
#   bash scripts/train_concurrently.sh RUNS_FILE [OUT]      # OUT defaults to results
#
# RUNS_FILE has one run per line: a name, then the flags of `python -m benchmarks.run` for it
# (blank lines and lines starting with # are skipped). Every run first trains in a folder of its
# own under WORK, all of them at once, testing on 2 episodes only; the trained models are then
# copied into OUT and each run whose name is not listed in SKIP_RETEST runs again alone, finds
# its model among the checkpoints and only tests it, so that test timings are not shared.
# Training times in the records are those of the concurrent training (an upper bound).
# A run named in SKIP_RETEST instead tests on TEST_EPISODES episodes during the concurrent phase
# (its test timings are then shared too) and writes into OUT/concurrent/NAME.
#
# Environment: DEVICE (default cuda), PYTHON (default python), COMMON (flags for every run),
# TEST_EPISODES (default 600), WORK (the folder for the concurrent phase, default a new temporary
# folder), TRAIN_LIMIT (seconds after which a run still training is stopped, default none),
# SKIP_RETEST (names, space-separated). A run whose training failed or was stopped is not tested. The data root and cache are found as for any run
# ($FEWSHOT_DATA_ROOT, $FEWSHOT_CACHE_DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS_FILE=$1
OUT=${2:-results}
DEVICE=${DEVICE:-cuda}
PYTHON=${PYTHON:-python}
COMMON=${COMMON:-}
TEST_EPISODES=${TEST_EPISODES:-600}
WORK=${WORK:-$(mktemp -d)}
TRAIN_LIMIT=${TRAIN_LIMIT:-0}
SKIP_RETEST=" ${SKIP_RETEST:-} "
mkdir -p "$WORK"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

names=()
declare -A FLAGS=()
while read -r name flags; do
  [[ -z "$name" || "$name" == \#* ]] && continue
  names+=("$name")
  FLAGS[$name]=$flags
done < "$RUNS_FILE"

run() {  # run NAME OUT_DIR TEST_EPISODES [TIME_LIMIT]
  # shellcheck disable=SC2086  # the flags are meant to split into words
  timeout "${4:-0}" "$PYTHON" -m benchmarks.run --device "$DEVICE" --quiet \
      --test-episodes "$3" --out "$2" $COMMON ${FLAGS[$1]}
}

retested() { [[ "$SKIP_RETEST" != *" $1 "* ]]; }

echo "training ${#names[@]} runs concurrently on $DEVICE (logs in $WORK)"
start=$SECONDS
pids=()
for name in "${names[@]}"; do
  if retested "$name"; then
    run "$name" "$WORK/$name" 2 "$TRAIN_LIMIT" > "$WORK/$name.log" 2>&1 &
  else
    run "$name" "$OUT/concurrent/$name" "$TEST_EPISODES" "$TRAIN_LIMIT" > "$WORK/$name.log" 2>&1 &
  fi
  pids+=($!)
done
failed=0
declare -A TRAINED=()
for i in "${!names[@]}"; do
  if wait "${pids[$i]}"; then
    TRAINED[${names[$i]}]=1
  else
    echo "training ${names[$i]} failed; see $WORK/${names[$i]}.log" >&2
    tail -5 "$WORK/${names[$i]}.log" >&2 || true
    failed=1
  fi
done
echo "concurrent training took $(( SECONDS - start )) s"

for checkpoints in "$WORK"/*/*/checkpoints; do
  [[ -d "$checkpoints" ]] || continue
  dataset=$(basename "$(dirname "$checkpoints")")
  mkdir -p "$OUT/$dataset/checkpoints"
  cp "$checkpoints"/*.pt "$OUT/$dataset/checkpoints/" 2>/dev/null || true
done
for name in "${names[@]}"; do
  retested "$name" && [[ -n "${TRAINED[$name]:-}" ]] || continue
  echo "testing $name alone"
  run "$name" "$OUT" "$TEST_EPISODES" || failed=1
done
exit $failed

#!/usr/bin/env bash
# The nightly chaos loop: `rudder chaos run` seed after seed, within a time budget, each run
# with its report kept; a summary at the end; exit 1 if any run did not pass.
#
#   scripts/chaos-nightly.sh                       10 seeds x 60 s, kill,pause,partition,disk
#   scripts/chaos-nightly.sh --seeds 30 --budget 45m --duration 60s
#   scripts/chaos-nightly.sh --masters 5 --first-seed 1000 --out /var/tmp/chaos-nightly
#   scripts/chaos-nightly.sh --target etcd --faults kill,pause,partition   (the reference)
#   scripts/chaos-nightly.sh --workload kv,pods --faults kill,pause,partition,disk,node-loss
#
# Partitions put each member in a network namespace of its own: run as root. A run takes
# its duration plus start-up and checking (about 5 s more); a seed is started only if it can
# end within the budget. `rudder chaos replay OUT/seed-S/report.json` runs a seed again.
set -euo pipefail
cd "$(dirname "$0")/.."

seeds=10
budget=15m
duration=60s
masters=3
faults=kill,pause,partition,disk
target=rudder
workload=kv
first_seed=$(date +%s)
out=/var/tmp/chaos-nightly/$(date +%Y%m%d-%H%M%S)

while (($#)); do
  case "$1" in
    --seeds) seeds=$2; shift 2 ;;
    --budget) budget=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --masters) masters=$2; shift 2 ;;
    --faults) faults=$2; shift 2 ;;
    --target) target=$2; shift 2 ;;
    --first-seed) first_seed=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --workload) workload=$2; shift 2 ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

seconds() {
  case "$1" in
    *h) echo $((${1%h} * 3600)) ;;
    *m) echo $((${1%m} * 60)) ;;
    *s) echo "${1%s}" ;;
    *) echo "$1" ;;
  esac
}
budget_s=$(seconds "$budget")
run_s=$(($(seconds "$duration") + 5))

if [[ ",$faults," == *",partition,"* || ",$faults," == *",loss,"* ]] && [ "$(id -u)" -ne 0 ]; then
  echo "partition and loss faults need root (each member gets a network namespace): run as root, or leave them out of --faults" >&2
  exit 2
fi

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/rudder-target}"
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
echo "==> building rudder (release, a chaos build: failpoints for --plant and disk faults)"
cargo build --release -q -p rudder-cli --features chaos
rudder="$CARGO_TARGET_DIR/release/rudder"

mkdir -p "$out"
summary="$out/summary.txt"
: > "$summary"
started=$(date +%s)
passed=0 failed=0 ran=0
for ((n = 0; n < seeds; n++)); do
  seed=$((first_seed + n))
  elapsed=$(($(date +%s) - started))
  if ((elapsed + run_s > budget_s)); then
    echo "==> budget of $budget reached after $ran runs: $((seeds - ran)) seeds left out" | tee -a "$summary"
    break
  fi
  dir="$out/seed-$seed"
  echo "==> seed $seed ($((n + 1))/$seeds, ${elapsed}s of ${budget_s}s used)"
  if "$rudder" chaos run --target "$target" --masters "$masters" --duration "$duration" \
      --workload "$workload" --faults "$faults" --seed "$seed" --report-dir "$dir" \
      > "$dir.log" 2>&1; then
    verdict=PASS passed=$((passed + 1))
  else
    verdict=FAIL failed=$((failed + 1))
  fi
  ran=$((ran + 1))
  printf '%s  seed %s  %s\n' "$verdict" "$seed" "$dir" | tee -a "$summary"
  grep -E '^(FAIL|UNKNOWN) ' "$dir.log" | sed 's/^/      /' | tee -a "$summary" || true
done

echo "==> $ran runs: $passed passed, $failed did not ($(($(date +%s) - started))s); reports in $out" | tee -a "$summary"
if ((ran > 0)); then
  "$rudder" chaos recovery "$out"/seed-*/report.json 2>&1 | tee -a "$summary" || true
fi
((failed == 0 && ran > 0))

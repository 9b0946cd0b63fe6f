#!/usr/bin/env bash
# Evaluates detection with default settings on the simulator's labelled faults: for each seed,
# simulates 6 pumps for 12 h (faults only after the first 40 %), trains on the fault-free 40 %,
# replays the whole run and prints the metrics after the training cut from summary.json, then
# the totals over all seeds (events and point counts added up).
#
# Usage: scripts/eval_simulator.sh [path/to/vaewatch]
# Environment: SEEDS (default "1 2 3"), FAULTS (faults per run, default 6: one of each kind),
# WORK (keep the intermediate files there instead of a temporary directory).
# Needs python3 (standard library only) to read the JSON summaries.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
vaewatch=${1:-target/release/vaewatch}
seeds=${SEEDS:-1 2 3}
faults=${FAULTS:-6}
if [[ -n "${WORK:-}" ]]; then
    work=$WORK
    mkdir -p "$work"
else
    work=$(mktemp -d "${TMPDIR:-/tmp}/vaewatch-eval-sim.XXXXXX")
    trap 'rm -rf "$work"' EXIT
fi
# The simulator starts at 2026-01-05T00:00:00Z; 40 % of 12 h is 04:48.
cut=2026-01-05T04:48:00Z

for seed in $seeds; do
    dir="$work/seed-$seed"
    rm -rf "$dir"
    mkdir -p "$dir"
    "$vaewatch" simulate --out "$dir/plant.parquet" --machines 6 --duration 12h \
        --faults "$faults" --seed "$seed" >"$dir/simulate.log"
    "$vaewatch" train --input "$dir/plant.parquet" --out "$dir/model" --until "$cut" --quiet \
        >"$dir/train.log"
    "$vaewatch" replay --model "$dir/model" --input "$dir/plant.parquet" --out "$dir/replay" \
        --metrics-from "$cut" --no-report >"$dir/replay.log"
done

python3 - "$work" $seeds <<'EOF'
import json, os, sys

work, seeds = sys.argv[1], sys.argv[2:]
keys = ("true_positives", "false_positives", "true_negatives", "false_negatives",
        "events", "detected_events")
total = dict.fromkeys(keys, 0)
print(f"{'seed':>6} {'events':>7} {'ev_rec':>7} {'far':>7} {'prec':>6} {'recall':>6} {'f1':>6} "
      f"{'fa_ep/d':>7} {'delay_s':>7}")
for seed in seeds:
    m = json.load(open(os.path.join(work, f"seed-{seed}", "replay", "summary.json")))["metrics"]
    for k in keys:
        total[k] += m[k]
    delay = m.get("median_detection_delay_ms")
    print(f"{seed:>6} {m['detected_events']:>3}/{m['events']:<3} {m['event_recall']:7.3f} "
          f"{m['false_alarm_rate']:7.4f} {m['precision'] or 0:6.3f} {m['recall'] or 0:6.3f} "
          f"{m['f1'] or 0:6.3f} {m['false_alarm_episodes_per_day']:7.2f} "
          f"{'-' if delay is None else round(delay / 1000):>7}")
tp, fp, tn, fn = (total[k] for k in keys[:4])
prec = tp / (tp + fp) if tp + fp else 0.0
rec = tp / (tp + fn) if tp + fn else 0.0
f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
print(f"{'total':>6} {total['detected_events']:>3}/{total['events']:<3} "
      f"{total['detected_events'] / max(total['events'], 1):7.3f} {fp / max(fp + tn, 1):7.4f} "
      f"{prec:6.3f} {rec:6.3f} {f1:6.3f}")
EOF

#!/usr/bin/env bash
# Evaluates detection with default settings on the simulator's labelled faults: for each seed,
# simulates 6 pumps for 36 h with faults only after the first 24 h, trains on that fault-free
# day (a full daily cycle of ambient temperature and demand, as a plant would collect before
# relying on a model), replays the whole run and prints the metrics after the training cut from
# summary.json, which faults were detected, then the totals over all seeds.
#
# Usage: scripts/eval_simulator.sh [path/to/vaewatch]
# Environment: SEEDS (default "1 2 3"), FAULTS (faults per run, default 6: one of each kind),
# WORK (keep the intermediate files there instead of a temporary directory), TRAIN_OPTIONS (a
# `vaewatch train --options` file; default: none, the built-in defaults).
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
# The simulator starts at 2026-01-05T00:00:00Z.
cut=2026-01-06T00:00:00Z
options=()
if [[ -n "${TRAIN_OPTIONS:-}" ]]; then
    options=(--options "$TRAIN_OPTIONS")
fi

for seed in $seeds; do
    dir="$work/seed-$seed"
    rm -rf "$dir"
    mkdir -p "$dir"
    "$vaewatch" simulate --out "$dir/plant.parquet" --machines 6 --duration 36h \
        --fault-free 24h --faults "$faults" --seed "$seed" >"$dir/simulate.log"
    "$vaewatch" train --input "$dir/plant.parquet" --out "$dir/model" --until "$cut" --quiet \
        "${options[@]}" >"$dir/train.log"
    "$vaewatch" replay --model "$dir/model" --input "$dir/plant.parquet" --out "$dir/replay" \
        --metrics-from "$cut" --no-report >"$dir/replay.log"
done

PYTHONPATH=scripts python3 - "$work" $seeds <<'EOF'
import json, os, re, sys
from datetime import datetime

import evallib


def ms(text):
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000


def episodes_of(path, id_field):
    """Per machine, the [start, end] of each episode in a JSON-lines event file."""
    episodes = {}
    if not os.path.exists(path):
        return episodes
    for line in open(path):
        a = json.loads(line)
        spans = episodes.setdefault(a["equipment_id"], {})
        if a["state"] == "opened":
            spans[a[id_field]] = [ms(a["window_end"]), float("inf")]
        elif a["state"] == "resolved" and a[id_field] in spans:
            spans[a[id_field]][1] = ms(a["window_end"])
    return episodes


# Faults the simulator makes show in more than one channel: a degrading bearing warms up and
# vibrates more (its log names the bearing temperature). Their alerts count as attributed when
# they name any of these channels first; they are reported apart from the single-channel ones.
SEVERAL_CHANNELS = {"degradation": {"bearing_temp", "vibration_rms"}}


def fault_lines(dir, attribution):
    """Each simulated fault and what caught it: an alert episode on its machine overlapping it
    (yes), else a sensor data-quality episode (sensor), else MISSED. For faults that name a
    channel, adds to `attribution[kind]` = [alert events inside the fault, those whose top
    channel is that channel (or one of SEVERAL_CHANNELS of the kind)]."""
    alerts = episodes_of(os.path.join(dir, "replay", "alerts.jsonl"), "alert_id")
    sensors = episodes_of(os.path.join(dir, "replay", "data_quality.jsonl"), "quality_id")
    events = [json.loads(line) for line in open(os.path.join(dir, "replay", "alerts.jsonl"))]
    out = []
    for line in open(os.path.join(dir, "simulate.log")):
        m = re.match(r"\s+fault (\S+)\s+machine\s+(\d+) from (\S+) to (\S+)(?: on (\S+))?", line)
        if m:
            start, end = ms(m[3]), ms(m[4])
            machine = f"pump-{int(m[2]):02d}"
            overlaps = lambda spans: any(a <= end and b >= start for a, b in spans.get(machine, {}).values())
            verdict = "yes" if overlaps(alerts) else "sensor" if overlaps(sensors) else "MISSED"
            out.append(f"{m[1]}:{verdict}")
            if m[5]:
                inside = [e for e in events if e["equipment_id"] == machine and e["state"] != "resolved"
                          and start <= ms(e["window_end"]) <= end]
                named = SEVERAL_CHANNELS.get(m[1], {m[5]})
                first = [e for e in inside
                         if e["top_channels"] and e["top_channels"][0]["channel"] in named]
                counts = attribution.setdefault(m[1], [0, 0])
                counts[0] += len(inside)
                counts[1] += len(first)
    return " ".join(out)


work, seeds = sys.argv[1], sys.argv[2:]
totals = evallib.Totals()
attribution = {}
print(f"{'seed':>6} {'events':>7} {'ev_rec':>7} {'far':>7} {'prec':>6} {'recall':>6} {'f1':>6} "
      f"{'fa_ep/d':>7} {'delay_s':>7}")
for seed in seeds:
    m = json.load(open(os.path.join(work, f"seed-{seed}", "replay", "summary.json")))["metrics"]
    totals.add(seed, m)
    delay = m.get("median_detection_delay_ms")
    print(f"{seed:>6} {m['detected_events']:>3}/{m['events']:<3} {m['event_recall']:7.3f} "
          f"{m['false_alarm_rate']:7.4f} {m['precision'] or 0:6.3f} {m['recall'] or 0:6.3f} "
          f"{m['f1'] or 0:6.3f} {m['false_alarm_episodes_per_day']:7.2f} "
          f"{'-' if delay is None else round(delay / 1000):>7}")
    print(f"{'':>6} {fault_lines(os.path.join(work, f'seed-{seed}'), attribution)}")
t = totals.summary()
print(f"{'total':>6} {t['detected_events']:>3}/{t['events']:<3} {t['event_recall'] or 0:7.3f} "
      f"{t['false_alarm_rate'] or 0:7.4f} {t['precision'] or 0:6.3f} {t['recall'] or 0:6.3f} "
      f"{t['f1'] or 0:6.3f}")
single = {k: c for k, c in attribution.items() if k not in SEVERAL_CHANNELS}
events = sum(c[0] for c in single.values())
first = sum(c[1] for c in single.values())
print("channel attribution (alert events inside single-channel faults whose top channel is the "
      "faulty one): " + ", ".join(f"{k} {c[1]}/{c[0]}" for k, c in sorted(single.items()))
      + f"; total {first}/{events}" + (f" ({first / events:.0%})" if events else ""))
for kind, channels in sorted(SEVERAL_CHANNELS.items()):
    if kind in attribution:
        c = attribution[kind]
        print(f"  {kind} (shows in {', '.join(sorted(channels))}): {c[1]}/{c[0]} alert events "
              "name one of them first")
EOF

#!/usr/bin/env bash
# Checks a CUDA build of vaewatch against its own CPU path on a machine with an NVIDIA GPU:
# replays one simulated plant with the bundled model on the GPU and with --cpu, then compares
# every window's score, channel errors and latent mean, and the alert events. Prints the largest
# differences and the GPU/CPU scoring speed ratio measured in the same run; exits non-zero when
# the outputs differ beyond float tolerance or the GPU was not used.
#
# Usage: scripts/cuda_check.sh VAEWATCH_BINARY [WORK_DIR]
#   (build it with: cargo build --release --features cuda)
# Needs python3 with pyarrow for the comparison.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bin=${1:?usage: scripts/cuda_check.sh VAEWATCH_BINARY [WORK_DIR]}
work=${2:-$(mktemp -d "${TMPDIR:-/tmp}/vaewatch-cuda-check.XXXXXX")}
mkdir -p "$work"
machines=${MACHINES:-6}
duration=${DURATION:-12h}

"$bin" simulate --out "$work/plant.parquet" --machines "$machines" --duration "$duration" \
    --seed 11 --log warn
"$bin" replay --model models/default --input "$work/plant.parquet" --out "$work/gpu" \
    --no-report --log warn
"$bin" replay --model models/default --input "$work/plant.parquet" --out "$work/cpu" \
    --no-report --cpu --log warn

python3 - "$work" <<'EOF'
import json
import sys

import pyarrow.parquet as pq

work = sys.argv[1]
gpu_summary = json.load(open(f"{work}/gpu/summary.json"))
cpu_summary = json.load(open(f"{work}/cpu/summary.json"))
failures = []
if gpu_summary["device"] != "cuda":
    failures.append(f"the GPU replay scored on {gpu_summary['device']}")


def rows(kind):
    table = pq.read_table(f"{work}/{kind}/windows.parquet").to_pylist()
    return {(r["equipment_id"], r["window_end"]): r for r in table}


gpu, cpu = rows("gpu"), rows("cpu")
if gpu.keys() != cpu.keys():
    failures.append(f"window sets differ: {len(gpu)} on the GPU, {len(cpu)} on the CPU")


def rel(a, b):
    return abs(a - b) / (1.0 + max(abs(a), abs(b)))


worst = {"score": 0.0, "channel_errors": 0.0, "latent_mu": 0.0}
flags = 0
for key in gpu.keys() & cpu.keys():
    g, c = gpu[key], cpu[key]
    worst["score"] = max(worst["score"], rel(g["score"], c["score"]))
    for field in ("channel_errors", "latent_mu"):
        for a, b in zip(g[field], c[field]):
            worst[field] = max(worst[field], rel(a, b))
    flags += g["is_anomaly"] != c["is_anomaly"]
for field, value in worst.items():
    print(f"largest relative difference, {field}: {value:.2e}")
    if value > 1e-4:
        failures.append(f"{field} differs by {value:.2e} (tolerance 1e-4)")
print(f"windows flagged differently: {flags} of {len(gpu)}")


def events(kind):
    with open(f"{work}/{kind}/alerts.jsonl") as f:
        return [
            (e["alert_id"], e["state"], e["event_time"], e["severity"])
            for e in map(json.loads, f)
        ]


same_alerts = events("gpu") == events("cpu")
print(f"alert events: {len(events('gpu'))} on the GPU, identical to the CPU's: {same_alerts}")
if not same_alerts:
    failures.append("alert events differ")
ratio = gpu_summary["windows_per_second"] / cpu_summary["windows_per_second"]
print(
    f"replay windows/s: GPU {gpu_summary['windows_per_second']:.0f}, "
    f"CPU {cpu_summary['windows_per_second']:.0f} (GPU/CPU {ratio:.2f}x, whole replay incl. IO)"
)
for failure in failures:
    print(f"FAIL: {failure}")
sys.exit(1 if failures else 0)
EOF

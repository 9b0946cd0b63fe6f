#!/usr/bin/env bash
# A soak at steady load: a simulated plant streams into `vaewatch run` (bundled model) at a steady
# pace (SPEEDUP simulated seconds per second, so the first windows of 128 samples close within
# the soak), for SOAK_SECONDS. Every SAMPLE_SECONDS the daemon's resident
# memory and its latency over that interval (p50 and p99 of the time from a window's completing
# message to the window scored, archived and its alert acknowledged, from the histogram's
# increase) are printed; at the end, the first and last samples side by side, the windows
# scored, and the dead letters. Fails only when the daemon exits on its own or scores nothing:
# memory and latency are figures to read, never asserted (shared machines are noisy).
#
# Usage: scripts/soak.sh [path/to/vaewatch]
# Environment: SOAK_SECONDS (default 180), SAMPLE_SECONDS (default 20), MACHINES (default 100),
# SPEEDUP (default 8: each machine sends 8 messages per second), KAFKA_BOOTSTRAP (a broker to use; otherwise
# deploy/kafka/kafka.sh starts one and stops it afterwards).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bin=${1:-target/release/vaewatch}
soak_seconds=${SOAK_SECONDS:-180}
sample_seconds=${SAMPLE_SECONDS:-20}
machines=${MACHINES:-100}
speedup=${SPEEDUP:-8}
work=$(mktemp -d "${TMPDIR:-/tmp}/vaewatch-soak.XXXXXX")
started_broker=
daemon_pid=
publisher_pid=
cleanup() {
    [[ -n "$daemon_pid" ]] && kill "$daemon_pid" 2>/dev/null || true
    [[ -n "$publisher_pid" ]] && kill "$publisher_pid" 2>/dev/null || true
    [[ -n "$started_broker" ]] && deploy/kafka/kafka.sh stop >/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

if [[ -z "${KAFKA_BOOTSTRAP:-}" ]]; then
    deploy/kafka/kafka.sh status >/dev/null || started_broker=1
    KAFKA_BOOTSTRAP=$(deploy/kafka/kafka.sh start)
fi
run_id="$$-$(date +%s)"
topic="vw-soak-telemetry-$run_id"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat >"$work/soak.toml" <<EOF
[kafka]
brokers = "$KAFKA_BOOTSTRAP"
group_id = "vw-soak-$run_id"
telemetry_topic = "$topic"
alert_topic = "vw-soak-alerts-$run_id"
dead_letter_topic = "vw-soak-dead-letters-$run_id"
control_topic = ""

[models]
default = "models/default"

[archive]
dir = "$work/archive"

[metrics]
listen = "127.0.0.1:$port"
EOF

# The plant runs longer than the soak; it is stopped at the end.
"$bin" simulate --brokers "$KAFKA_BOOTSTRAP" --topic "$topic" --machines "$machines" \
    --duration "$(((soak_seconds + 60) * speedup))s" --faults "$((machines / 10 + 1))" \
    --start now --speedup "$speedup" >"$work/simulate.log" 2>&1 &
publisher_pid=$!
"$bin" run --config "$work/soak.toml" --log warn 2>"$work/daemon.log" &
daemon_pid=$!

python3 - "$daemon_pid" "$port" "$soak_seconds" "$sample_seconds" "$machines" "$speedup" <<'EOF'
import sys, time, urllib.request

pid, port, soak, every, machines, speedup = (int(float(a)) for a in sys.argv[1:])


def metrics():
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    except OSError:
        return None
    values, buckets = {}, {}
    for line in text.splitlines():
        if line.startswith("#") or " " not in line:
            continue
        key, value = line.rsplit(" ", 1)
        if key.startswith("vaewatch_ready_to_score_seconds_bucket{le=\""):
            bound = key.split("\"")[1]
            buckets[float(bound)] = float(value)
        else:
            values[key] = float(value)
    return values, sorted(buckets.items())


def rss_mib():
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None


def quantile(buckets, q):
    total = buckets[-1][1] if buckets else 0
    if total <= 0:
        return None
    rank, lower, below = q * total, 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if bound == float("inf"):
                return lower
            return lower + (bound - lower) * (rank - below) / max(count - below, 1e-12)
        lower, below = bound, count
    return lower


def alive():
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except OSError:
        return False


print(f"soak: {machines} machines, {machines * speedup} messages/s, for {soak} s, a sample every {every} s")
print(f"{'t_s':>5} {'rss_mib':>8} {'windows':>8} {'p50_ms':>7} {'p99_ms':>7} {'lag':>6}")
start = time.time()
samples, previous = [], None
while time.time() - start < soak:
    time.sleep(every)
    if not alive():
        sys.exit("the daemon exited during the soak")
    got = metrics()
    if got is None:
        continue
    values, buckets = got
    # The latency of this interval: the histogram's increase since the last sample.
    interval = buckets
    if previous is not None and len(previous) == len(buckets):
        interval = [(b, c - p) for (b, c), (_, p) in zip(buckets, previous)]
    previous = buckets
    p50, p99 = quantile(interval, 0.5), quantile(interval, 0.99)
    row = (round(time.time() - start), rss_mib(), values.get("vaewatch_windows_scored_total", 0),
           None if p50 is None else p50 * 1000, None if p99 is None else p99 * 1000,
           values.get("vaewatch_consumer_lag_messages", 0))
    samples.append(row)
    fmt = lambda v, w: f"{'-':>{w}}" if v is None else f"{v:>{w}.0f}"
    print(f"{row[0]:>5} {fmt(row[1], 8)} {row[2]:>8.0f} {fmt(row[3], 7)} {fmt(row[4], 7)} {row[5]:>6.0f}")
    sys.stdout.flush()
if len(samples) < 2 or samples[-1][2] == 0:
    sys.exit("the daemon scored nothing")
first, last = samples[0], samples[-1]
print(f"first sample: rss {first[1]:.0f} MiB, p50 {first[3] or 0:.0f} ms, p99 {first[4] or 0:.0f} ms")
print(f"last sample:  rss {last[1]:.0f} MiB, p50 {last[3] or 0:.0f} ms, p99 {last[4] or 0:.0f} ms")
print(f"windows scored: {last[2]:.0f} ({(last[2] - first[2]) / max(last[0] - first[0], 1):.0f}/s between the samples)")
dead = sum(v for k, v in metrics()[0].items() if k.startswith("vaewatch_dead_lettered_total"))
print(f"dead letters: {dead:.0f}")
EOF
kill -TERM "$daemon_pid"
wait "$daemon_pid" || { echo "soak: the daemon did not exit cleanly on SIGTERM" >&2; exit 1; }
daemon_pid=

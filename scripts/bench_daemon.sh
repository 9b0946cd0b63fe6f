#!/usr/bin/env bash
# The daemon's throughput and latency, measured in one run.
#
# Throughput: publishes a simulated plant's telemetry, reads it with `vaewatch bench-consumer`
# (the daemon's client settings, nothing done with the messages), then with `vaewatch run` and
# the bundled model (parse, window, score, alert, archive, commit), and prints both rates, their
# ratio, and the daemon's windows/s against `vaewatch model bench` of the same model and mode in
# the same run (what parsing, windowing, alerting and archiving cost). The daemon's time runs
# from its first consumed message to its last scored window (polled on /metrics), so model
# loading and the group join are left out.
#
# Latency: a plant of one machine per message/s of half the daemon's top rate, sampled every
# second (the model's period) with event times that follow the clock (`simulate --start now
# --speedup 1`), streams for LATENCY_SECONDS into a fresh daemon. The daemon's histograms give
# the time from the message that completed a window being read (the daemon's own latency) and
# from the window's last event time (which adds the wait for its end to become final, the
# model's allowed lateness) to the window scored, archived and its alert acknowledged; p50 and
# p99 are interpolated within the buckets.
#
# Usage: scripts/bench_daemon.sh [path/to/vaewatch]
# Environment: MACHINES (default 20), DURATION (plant time, default 1h), LATENCY_SECONDS
# (default 240; 0 skips the latency run), LATENCY_MACHINES (default: half the top rate in
# messages/s), KAFKA_BOOTSTRAP (a broker to use; otherwise
# deploy/kafka/kafka.sh starts one and stops it afterwards).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bin=${1:-target/release/vaewatch}
machines=${MACHINES:-20}
duration=${DURATION:-1h}
latency_seconds=${LATENCY_SECONDS:-240}
work=$(mktemp -d "${TMPDIR:-/tmp}/vaewatch-bench-daemon.XXXXXX")
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

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# start_daemon NAME TOPIC: a daemon with the bundled model on TOPIC, with its own group, topics,
# archive and metrics port ($port).
start_daemon() {
    port=$(free_port)
    cat > "$work/$1.toml" <<EOF
[kafka]
brokers = "$KAFKA_BOOTSTRAP"
group_id = "vw-bench-$1-$run_id"
telemetry_topic = "$2"
alert_topic = "vw-bench-alerts-$1-$run_id"
dead_letter_topic = "vw-bench-dead-letters-$1-$run_id"

[models]
default = "models/default"

[archive]
dir = "$work/archive-$1"

[metrics]
listen = "127.0.0.1:$port"
EOF
    "$bin" run --config "$work/$1.toml" --log warn 2>"$work/$1.log" &
    daemon_pid=$!
}

stop_daemon() {
    kill -TERM "$daemon_pid"
    wait "$daemon_pid"
    daemon_pid=
}

metrics_text() {
    curl -s "http://127.0.0.1:$port/metrics" 2>/dev/null || true
}

metric() {
    metrics_text | awk -v name="$1" '$1 == name { print $2 }'
}

# poll MODE ...: watches the daemon's /metrics from one Python process (a curl and an awk every
# tenth of a second would take a few percent of a small machine from the daemon measured).
#   poll consumed N NAME: until the daemon has consumed N messages; prints the time it first
#     consumed one and the time it reached N.
#   poll scored: after the daemon consumed everything, until its scored-window count has not
#     moved for 2 s (the windows still waiting are scored, the last ones of each machine wait for
#     later samples that never come); prints the count and the time it last moved.
poll() {
    python3 - "$port" "$daemon_pid" "$work" "$@" <<'EOF'
import os, sys, time, urllib.request

port, pid, work, mode, *args = sys.argv[1:]

def metric(name):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            text = r.read().decode()
    except OSError:
        return 0.0
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0

def alive():
    try:
        os.kill(int(pid), 0)
        return True
    except OSError:
        return False

if mode == "consumed":
    n, name = float(args[0]), args[1]
    first, consumed, deadline = None, 0.0, time.time() + 1800
    while time.time() < deadline:
        consumed = metric("vaewatch_messages_consumed_total")
        now = time.time()
        if first is None and consumed > 0:
            first = now
        if consumed >= n:
            print(first, now)
            sys.exit(0)
        if not alive():
            sys.stderr.write(open(f"{work}/{name}.log").read())
            sys.exit(1)
        time.sleep(0.05)
    sys.exit(f"the daemon read only {consumed:.0f} of {n:.0f} messages")
else:
    last, moved = -1.0, time.time()
    while time.time() - moved < 2:
        windows = metric("vaewatch_windows_scored_total")
        if windows != last:
            last, moved = windows, time.time()
        time.sleep(0.05)
    print(f"{last:.0f}", moved)
EOF
}

# --- Throughput ---
topic="vw-bench-telemetry-$run_id"
# One partition (the broker's default for a new topic): one consumer reads it in both runs.
published=$("$bin" simulate --brokers "$KAFKA_BOOTSTRAP" --topic "$topic" --machines "$machines" \
    --duration "$duration" --seed 5 --log warn | sed -n 's/^\([0-9]*\) telemetry messages published.*/\1/p')
echo "published $published telemetry messages ($machines machines, $duration of plant time)"

bare=$("$bin" bench-consumer --brokers "$KAFKA_BOOTSTRAP" --topic "$topic" --messages "$published" --log warn)
bare_rate=$(python3 -c 'import json,sys; print(round(json.loads(sys.argv[1])["messages_per_second"]))' "$bare")

start_daemon throughput "$topic"
read -r first _ < <(poll consumed "$published" throughput)
read -r windows last < <(poll scored)
batches=$(metric vaewatch_batch_size_count)
stop_daemon
# As many windows as the daemon scored: both runs last about as long, so the machine's noise
# weighs on them alike.
model_bench=$("$bin" model bench models/default --windows "$windows" --log warn)
model_rate=$(python3 -c 'import json,sys; print(round(json.loads(sys.argv[1])["windows_per_second"]))' "$model_bench")

top_rate=$(python3 - "$bare_rate" "$published" "$first" "$last" "${windows:-0}" "${batches:-0}" "$model_rate" <<'EOF'
import sys

bare, published, first, last, windows, batches, model = (float(v) for v in sys.argv[1:])
seconds = max(last - first, 1e-9)
daemon = published / seconds
out = sys.stderr
print(f"bare consumer: {bare:10.0f} messages/s", file=out)
print(f"daemon:        {daemon:10.0f} messages/s ({windows / seconds:.0f} windows scored/s, "
      f"{windows:.0f} windows in {seconds:.1f} s, {windows / max(batches, 1):.0f} windows per batch)",
      file=out)
print(f"daemon / bare consumer: {daemon / bare:.3f}", file=out)
print(f"model bench, same model, mode and windows, batch 256: {model:.0f} windows/s; "
      f"daemon / model bench: {windows / seconds / model:.2f}", file=out)
print(round(daemon))
EOF
)

# --- Latency at half the top rate ---
((latency_seconds > 0)) || exit 0
plant=${LATENCY_MACHINES:-$((top_rate / 2))}
topic="vw-bench-latency-$run_id"
echo "latency: $plant machines sampled every second ($plant messages/s; top rate $top_rate) for ${latency_seconds} s"
"$bin" simulate --brokers "$KAFKA_BOOTSTRAP" --topic "$topic" --machines "$plant" \
    --duration "${latency_seconds}s" --start now --speedup 1 --seed 6 --log warn \
    >"$work/publisher.out" 2>"$work/publisher.log" &
publisher_pid=$!
sleep 2 # the topic exists once the first messages are in
start_daemon latency "$topic"
wait "$publisher_pid" || { cat "$work/publisher.log" >&2; exit 1; }
publisher_pid=
published=$(sed -n 's/^\([0-9]*\) telemetry messages published.*/\1/p' "$work/publisher.out")
poll consumed "$published" latency >/dev/null
sleep 1 # the last batch's windows are archived after their messages are counted
metrics_text >"$work/latency.metrics"
stop_daemon

python3 - "$work/latency.metrics" <<'EOF'
import sys

families = {}
for line in open(sys.argv[1]):
    if line.startswith("#") or "_bucket{le=" not in line:
        continue
    name, rest = line.split("_bucket{le=\"", 1)
    bound, count = rest.split("\"} ")
    families.setdefault(name, []).append((float(bound), float(count)))

def quantile(buckets, q):
    """Linear interpolation within the bucket the quantile falls in, as PromQL does."""
    total = buckets[-1][1]
    if total == 0:
        return None
    rank, lower, below = q * total, 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if bound == float("inf"):
                return lower
            return lower + (bound - lower) * (rank - below) / max(count - below, 1e-12)
        lower, below = bound, count
    return lower

for name, what in [
    ("vaewatch_ready_to_score_seconds",
     "window complete (its last message read) to scored, archived and alert acknowledged"),
    ("vaewatch_event_to_score_seconds",
     "window end (event time) to scored, archived and alert acknowledged, every window"),
    ("vaewatch_event_to_alert_seconds", "window end (event time) to alert acknowledged"),
]:
    buckets = families.get(name, [])
    n = buckets[-1][1] if buckets else 0
    if not n:
        print(f"{what}: no observations")
        continue
    p50, p99 = (quantile(buckets, q) * 1000 for q in (0.5, 0.99))
    print(f"{what}: p50 {p50:.0f} ms, p99 {p99:.0f} ms ({n:.0f} observations)")
EOF

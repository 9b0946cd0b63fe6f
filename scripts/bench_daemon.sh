#!/usr/bin/env bash
# Daemon throughput against a bare consumer, measured in one run on the same topic: publishes a
# simulated plant's telemetry, reads it with `vaewatch bench-consumer` (the daemon's client
# settings, nothing done with the messages), then with `vaewatch run` and the bundled model
# (parse, window, score, alert, archive, commit), and prints both rates and their ratio. The
# daemon's time runs from its first consumed message to its last (polled on /metrics every
# 0.2 s), so model loading and the group join are left out.
#
# Usage: scripts/bench_daemon.sh [path/to/vaewatch]
# Environment: MACHINES (default 20), DURATION (plant time, default 1h), KAFKA_BOOTSTRAP (a
# broker to use; otherwise deploy/kafka/kafka.sh starts one and stops it afterwards).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bin=${1:-target/release/vaewatch}
machines=${MACHINES:-20}
duration=${DURATION:-1h}
work=$(mktemp -d "${TMPDIR:-/tmp}/vaewatch-bench-daemon.XXXXXX")
started_broker=
daemon_pid=
cleanup() {
    [[ -n "$daemon_pid" ]] && kill "$daemon_pid" 2>/dev/null || true
    [[ -n "$started_broker" ]] && deploy/kafka/kafka.sh stop >/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

if [[ -z "${KAFKA_BOOTSTRAP:-}" ]]; then
    deploy/kafka/kafka.sh status >/dev/null || started_broker=1
    KAFKA_BOOTSTRAP=$(deploy/kafka/kafka.sh start)
fi
run_id="$$-$(date +%s)"
topic="vw-bench-telemetry-$run_id"

# One partition (the broker's default for a new topic): one consumer reads it in both runs.
published=$("$bin" simulate --brokers "$KAFKA_BOOTSTRAP" --topic "$topic" --machines "$machines" \
    --duration "$duration" --seed 5 --log warn | sed -n 's/^\([0-9]*\) telemetry messages published.*/\1/p')
echo "published $published telemetry messages ($machines machines, $duration of plant time)"

bare=$("$bin" bench-consumer --brokers "$KAFKA_BOOTSTRAP" --topic "$topic" --messages "$published" --log warn)
bare_rate=$(python3 -c 'import json,sys; print(round(json.loads(sys.argv[1])["messages_per_second"]))' "$bare")

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat > "$work/vaewatch.toml" <<EOF
[kafka]
brokers = "$KAFKA_BOOTSTRAP"
group_id = "vw-bench-daemon-$run_id"
telemetry_topic = "$topic"
alert_topic = "vw-bench-alerts-$run_id"
dead_letter_topic = "vw-bench-dead-letters-$run_id"

[models]
default = "models/default"

[archive]
dir = "$work/archive"

[metrics]
listen = "127.0.0.1:$port"
EOF
"$bin" run --config "$work/vaewatch.toml" --log warn 2>"$work/daemon.log" &
daemon_pid=$!

metric() {
    curl -s "http://127.0.0.1:$port/metrics" 2>/dev/null |
        awk -v name="$1" '$1 == name { print $2 }' || true
}
first= last= consumed=0
deadline=$((SECONDS + 1800))
while ((SECONDS < deadline)); do
    consumed=$(metric vaewatch_messages_consumed_total)
    consumed=${consumed:-0}
    now=$(date +%s.%N)
    if [[ -z "$first" ]] && awk -v c="$consumed" 'BEGIN { exit !(c > 0) }'; then
        first=$now
    fi
    if awk -v c="$consumed" -v n="$published" 'BEGIN { exit !(c >= n) }'; then
        last=$now
        break
    fi
    kill -0 "$daemon_pid" 2>/dev/null || { cat "$work/daemon.log"; exit 1; }
    sleep 0.2
done
[[ -n "$last" ]] || { echo "the daemon read only $consumed of $published messages" >&2; exit 1; }
windows=$(metric vaewatch_windows_scored_total)
kill -TERM "$daemon_pid"
wait "$daemon_pid"
daemon_pid=

python3 - "$bare_rate" "$published" "$first" "$last" "${windows:-0}" <<'EOF'
import sys

bare, published, first, last, windows = (float(v) for v in sys.argv[1:])
seconds = max(last - first, 1e-9)
daemon = published / seconds
print(f"bare consumer: {bare:10.0f} messages/s")
print(f"daemon:        {daemon:10.0f} messages/s ({windows / seconds:.0f} windows scored/s, "
      f"{windows:.0f} windows in {seconds:.1f} s)")
print(f"daemon / bare consumer: {daemon / bare:.3f}")
EOF

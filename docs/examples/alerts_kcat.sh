#!/usr/bin/env bash
# vaewatch's alert topic with kcat (Debian: apt-get install kcat): one line per message, the
# event kind from the `vaewatch-event` header, the machine (the key) and the event's JSON.
#
#   alerts_kcat.sh BROKERS [TOPIC]          follow new events
#   FROM=beginning END=1 alerts_kcat.sh ... everything the topic holds, then exit
set -euo pipefail
brokers=${1:?usage: alerts_kcat.sh BROKERS [TOPIC]}
topic=${2:-vaewatch.alerts}
exit_at_end=()
if [[ -n "${END:-}" ]]; then
    exit_at_end=(-e)
fi
kcat -b "$brokers" -t "$topic" -C -q -o "${FROM:-end}" "${exit_at_end[@]}" -f '%h\t%k\t%s\n'

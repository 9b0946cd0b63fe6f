#!/usr/bin/env bash
# Checks the monitoring files with Prometheus' own tool: the alerting rules, and every query of
# the Grafana dashboard (each turned into a recording rule, so promtool parses it). Installs
# promtool from the distribution's `prometheus` package when it is missing (Debian, Ubuntu).
# That every metric they name is one the daemon serves is a test: tests/deploy.rs.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

if ! command -v promtool >/dev/null; then
    echo "check.sh: installing promtool (package prometheus)" >&2
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus
fi

promtool check rules deploy/prometheus/vaewatch-rules.yml

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 - deploy/grafana/vaewatch-dashboard.json >"$work/dashboard-queries.yml" <<'PY'
import json
import sys

dashboard = json.load(open(sys.argv[1]))
print("groups:\n  - name: dashboard-queries\n    rules:")
for panel in dashboard["panels"]:
    for target in panel["targets"]:
        name = f"dashboard:panel{panel['id']}:{target['refId']}"
        print(f"      - record: {json.dumps(name)}\n        expr: {json.dumps(target['expr'])}")
PY
promtool check rules "$work/dashboard-queries.yml"

# The compose stack's Prometheus config (deploy/docker/compose.yaml), with the rules it loads.
promtool check config deploy/prometheus/prometheus.yml

#!/usr/bin/env bash
# Rebuilds the bundled model in models/default from simulated normal operation: a fleet of 8
# pumps, 4 hours at 1 s, no faults, fixed seeds, so anyone gets the same model from the same
# binary. Usage: scripts/train_default_model.sh [path/to/vaewatch]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
vaewatch=${1:-target/release/vaewatch}
work=$(mktemp -d "${TMPDIR:-/tmp}/vaewatch-default-model.XXXXXX")
trap 'rm -rf "$work"' EXIT

"$vaewatch" simulate --out "$work/normal.parquet" --machines 8 --duration 24h --faults 0 --seed 1001
rm -rf models/default.new
"$vaewatch" train --input "$work/normal.parquet" --out models/default.new --seed 1 --quiet \
    --options scripts/default_model.toml
# Where all of the training windows lie in the latent space, for `vaewatch sample` (train fits it
# on the held-out windows only).
"$vaewatch" model fit-latent --model models/default.new --input "$work/normal.parquet" \
    --out models/default.new
rm -rf models/default
mv models/default.new models/default
"$vaewatch" model inspect models/default

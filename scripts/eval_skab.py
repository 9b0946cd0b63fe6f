#!/usr/bin/env python3
"""Evaluate vaewatch on the Skoltech Anomaly Benchmark (SKAB) with default settings.

SKAB is real multichannel telemetry of a water-pump test bed: 8 sensors sampled at 1 Hz
(two accelerometer RMS, motor current, pressure, two temperatures, voltage, flow rate), one
experiment per CSV, each starting in normal operation and then subjected to one induced anomaly
(a valve closed at the outlet or inlet, rotor imbalance, water added or drained, cavitation, hot
water), labelled row by row (`anomaly`, or `is_anomaly` in some revisions of the data).

For each CSV under SKAB_DIR (the layout of the SKAB repository's `data` folder: valve1/, valve2/,
other/; any subset of the files may be present), trains a model on the first 400 rows (the
training split SKAB's baselines use; these rows are normal in every file) with `vaewatch train`,
replays the whole experiment with `vaewatch replay` and counts point-wise results on the rows
after the training cut. Prints a table per file and the totals, and writes them as JSON if asked.

With `--accept-after-anomaly SECONDS`, an operator who knows when each experiment ended (the
valve was reopened, the rotor rebalanced) accepts the rig's behaviour as normal that long after
the file's last labelled anomaly row (`vaewatch replay --control`): what "accept as normal"
gives after a lasting change. It reads the labels to place the operator, so it is an upper
bound of what a person at the rig would get, not a detector setting.

Usage: scripts/eval_skab.py SKAB_DIR [--vaewatch PATH] [--work DIR] [--train-rows 400]
       [--accept-after-anomaly SECONDS]
Only the Python standard library is needed.
"""

import csv
import json
import os
import sys
import tempfile
from datetime import datetime, timezone

import evallib

LABEL_COLUMNS = ("anomaly", "is_anomaly")
IGNORED_COLUMNS = ("datetime", "changepoint", "is_pa")


def channel_name(column):
    """`Volume Flow RateRMS` -> `volume_flow_rate_rms`: snake case for vaewatch's channel names."""
    out = []
    for i, ch in enumerate(column.strip()):
        if ch.isupper() and i > 0 and (column[i - 1].islower() or column[i - 1].isdigit()):
            out.append("_")
        out.append("_" if ch == " " else ch.lower())
    return "".join(out).replace("__", "_")


def iso(text):
    ts = datetime.strptime(text.strip(), "%Y-%m-%d %H:%M:%S").replace(tzinfo=timezone.utc)
    return ts.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def convert(src, full, train, train_rows):
    """Writes the experiment as vaewatch history CSV (`ts`, channels, `label`) and its first
    `train_rows` rows without labels. Returns the `ts` of the first row after the cut and that
    of the last anomalous row (None when there is none)."""
    with open(src, newline="") as f:
        rows = list(csv.reader(f, delimiter=";"))
    header, rows = [h.strip() for h in rows[0]], [r for r in rows[1:] if r]
    label = next(i for i, h in enumerate(header) if h in LABEL_COLUMNS)
    channels = [i for i, h in enumerate(header) if h not in IGNORED_COLUMNS and i != label]
    if len(rows) <= train_rows:
        raise ValueError(f"{src}: {len(rows)} rows, not more than the {train_rows} training rows")
    with open(full, "w", newline="") as f_full, open(train, "w", newline="") as f_train:
        w_full, w_train = csv.writer(f_full), csv.writer(f_train)
        names = [channel_name(header[i]) for i in channels]
        w_full.writerow(["ts", *names, "label"])
        w_train.writerow(["ts", *names])
        for n, r in enumerate(rows):
            values = [r[i] for i in channels]
            w_full.writerow([iso(r[0]), *values, int(float(r[label]))])
            if n < train_rows:
                w_train.writerow([iso(r[0]), *values])
    anomalous = [r[0] for r in rows if float(r[label]) > 0]
    return iso(rows[train_rows][0]), (iso(anomalous[-1]) if anomalous else None)


def main():
    ap = evallib.parser(__doc__, "skab_dir")
    ap.add_argument("--train-rows", type=int, default=400)
    ap.add_argument("--accept-after-anomaly", type=float, default=None, metavar="SECONDS")
    args = ap.parse_args()

    args.work = args.work or tempfile.mkdtemp(prefix="vaewatch-skab-")
    os.makedirs(args.work, exist_ok=True)
    files = sorted(
        os.path.relpath(os.path.join(root, f), args.skab_dir)
        for root, _, names in os.walk(args.skab_dir)
        for f in names
        if f.endswith(".csv") and "anomaly-free" not in root
    )
    if not files:
        sys.exit(f"no experiment CSVs under {args.skab_dir}")
    totals = evallib.Totals()
    print(f"{'file':24} {evallib.HEADER}")
    for rel in files:
        _, full, train = evallib.series_paths(args.work, rel)
        metrics_from, last_anomaly = convert(os.path.join(args.skab_dir, rel), full, train,
                                             args.train_rows)
        control = None
        if args.accept_after_anomaly is not None and last_anomaly:
            at = datetime.strptime(last_anomaly, "%Y-%m-%dT%H:%M:%S.000Z").replace(
                tzinfo=timezone.utc).timestamp() + args.accept_after_anomaly
            control = full[:-len(".csv")] + ".control.jsonl"
            with open(control, "w") as f:
                json.dump({"schema_version": 1, "action": "accept_normal",
                           "equipment_id": os.path.basename(full)[:-len(".csv")],
                           "at": datetime.fromtimestamp(at, timezone.utc)
                           .strftime("%Y-%m-%dT%H:%M:%S.000Z"),
                           "by": "eval_skab.py", "reason": "experiment over"}, f)
                f.write("\n")
        evallib.evaluate(args, totals, rel, 24, metrics_from, control)
    totals.report("TOTAL (after training)", 24, len(files), args.json_out)

if __name__ == "__main__":
    main()

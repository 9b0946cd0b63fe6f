#!/usr/bin/env python3
"""Evaluate vaewatch on the Numenta Anomaly Benchmark (NAB) series with default settings.

For each CSV under NAB_DIR/data (univariate `timestamp,value`), labels every row that falls inside
one of the file's anomaly windows (NAB_DIR/labels/combined_windows.json), trains a model on the
first 15 % of the rows (`vaewatch train`), replays the whole series (`vaewatch replay`) and counts
point-wise results on the rows after the training cut. Prints a table per file and the totals:
precision, recall, F1, false-alarm rate, miss rate and event recall, and writes them as JSON.

Usage: scripts/eval_nab.py NAB_DIR [--vaewatch PATH] [--work DIR] [--train-fraction 0.15]
Only the Python standard library is needed.
"""

import csv
import json
import os
import tempfile
from datetime import datetime, timezone

import evallib


def parse_ts(text):
    text = text.strip()
    for fmt in ("%Y-%m-%d %H:%M:%S.%f", "%Y-%m-%d %H:%M:%S"):
        try:
            return datetime.strptime(text, fmt).replace(tzinfo=timezone.utc)
        except ValueError:
            pass
    raise ValueError(f"unrecognised timestamp {text!r}")


def iso(dt):
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def main():
    ap = evallib.parser(__doc__, "nab_dir")
    ap.add_argument("--train-fraction", type=float, default=0.15)
    args = ap.parse_args()

    windows = json.load(open(os.path.join(args.nab_dir, "labels", "combined_windows.json")))
    args.work = args.work or tempfile.mkdtemp(prefix="vaewatch-nab-")
    os.makedirs(args.work, exist_ok=True)
    data_dir = os.path.join(args.nab_dir, "data")
    files = sorted(
        os.path.relpath(os.path.join(root, f), data_dir)
        for root, _, names in os.walk(data_dir)
        for f in names
        if f.endswith(".csv")
    )
    totals = evallib.Totals()
    print(f"{'file':58} {evallib.HEADER}")
    for rel in files:
        spans = [(parse_ts(a), parse_ts(b)) for a, b in windows.get(rel, [])]
        rows = list(csv.DictReader(open(os.path.join(data_dir, rel))))
        _, full, train = evallib.series_paths(args.work, rel)
        cut = max(1, int(len(rows) * args.train_fraction))
        with open(full, "w", newline="") as f_full, open(train, "w", newline="") as f_train:
            w_full, w_train = csv.writer(f_full), csv.writer(f_train)
            w_full.writerow(["ts", "value", "label"])
            w_train.writerow(["ts", "value"])
            for i, row in enumerate(rows):
                ts = parse_ts(row["timestamp"])
                label = int(any(a <= ts <= b for a, b in spans))
                w_full.writerow([iso(ts), row["value"], label])
                if i < cut:
                    w_train.writerow([iso(ts), row["value"]])
        metrics_from = iso(parse_ts(rows[cut]["timestamp"]))
        evallib.evaluate(args, totals, rel, 58, metrics_from)
    totals.report("TOTAL (points after the training cut)", 58, len(files), args.json_out)

if __name__ == "__main__":
    main()

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

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
from datetime import datetime, timezone


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


def ratio(num, den):
    return num / den if den else None


def fmt(x):
    return "  n/a" if x is None else f"{x:5.3f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("nab_dir")
    ap.add_argument("--vaewatch", default=os.environ.get("VAEWATCH", "target/release/vaewatch"))
    ap.add_argument("--work", default=None, help="keep intermediate files here")
    ap.add_argument("--train-fraction", type=float, default=0.15)
    ap.add_argument("--json-out", default=None, help="write per-file and total figures here")
    args = ap.parse_args()

    windows = json.load(open(os.path.join(args.nab_dir, "labels", "combined_windows.json")))
    work = args.work or tempfile.mkdtemp(prefix="vaewatch-nab-")
    os.makedirs(work, exist_ok=True)
    data_dir = os.path.join(args.nab_dir, "data")
    files = sorted(
        os.path.relpath(os.path.join(root, f), data_dir)
        for root, _, names in os.walk(data_dir)
        for f in names
        if f.endswith(".csv")
    )
    totals = {"tp": 0, "fp": 0, "tn": 0, "fn": 0, "events": 0, "detected_events": 0}
    results = []
    failed = []
    print(f"{'file':58} {'prec':>5} {'rec':>5} {'f1':>5} {'far':>5} {'miss':>5} {'ev':>5}")
    for rel in files:
        spans = [(parse_ts(a), parse_ts(b)) for a, b in windows.get(rel, [])]
        rows = list(csv.DictReader(open(os.path.join(data_dir, rel))))
        name = rel.replace("/", "__")[:-4]
        full = os.path.join(work, name + ".csv")
        train = os.path.join(work, name + ".train.csv")
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
        model = os.path.join(work, name + ".model")
        out = os.path.join(work, name + ".replay")
        metrics_from = iso(parse_ts(rows[cut]["timestamp"]))
        try:
            subprocess.run([args.vaewatch, "train", "--input", train, "--out", model, "--quiet"],
                           check=True, stdout=subprocess.DEVNULL)
            subprocess.run([args.vaewatch, "replay", "--model", model, "--input", full,
                            "--out", out, "--metrics-from", metrics_from, "--no-report"],
                           check=True, stdout=subprocess.DEVNULL)
        except subprocess.CalledProcessError as e:
            # A failed file is reported and left out of the totals; the run goes on.
            failed.append(rel)
            results.append({"file": rel, "error": f"{e.cmd[1]} exited with {e.returncode}"})
            print(f"{rel:58} FAILED: vaewatch {e.cmd[1]} exited with {e.returncode}")
            sys.stdout.flush()
            continue
        summary = json.load(open(os.path.join(out, "summary.json")))
        m = summary["metrics"]
        for k, name in (("tp", "true_positives"), ("fp", "false_positives"),
                        ("tn", "true_negatives"), ("fn", "false_negatives"),
                        ("events", "events"), ("detected_events", "detected_events")):
            totals[k] += m[name]
        results.append({"file": rel, "metrics": m})
        print(f"{rel:58} {fmt(m['precision'])} {fmt(m['recall'])} {fmt(m['f1'])} "
              f"{fmt(m['false_alarm_rate'])} {fmt(m['miss_rate'])} "
              f"{m['detected_events']}/{m['events']}")
        sys.stdout.flush()

    tp, fp, tn, fn = (totals[k] for k in ("tp", "fp", "tn", "fn"))
    precision, recall = ratio(tp, tp + fp), ratio(tp, tp + fn)
    f1 = ratio(2 * precision * recall, precision + recall) if precision and recall else None
    total = {
        **totals,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "false_alarm_rate": ratio(fp, fp + tn),
        "miss_rate": ratio(fn, tp + fn),
        "event_recall": ratio(totals["detected_events"], totals["events"]),
    }
    print(f"{'TOTAL (points after the training cut)':58} {fmt(precision)} {fmt(recall)} {fmt(f1)} "
          f"{fmt(total['false_alarm_rate'])} {fmt(total['miss_rate'])} "
          f"{totals['detected_events']}/{totals['events']}")
    if failed:
        print(f"{len(failed)} of {len(files)} files failed and are not in the totals: "
              + ", ".join(failed))
    total["failed_files"] = failed
    if args.json_out:
        json.dump({"files": results, "total": total}, open(args.json_out, "w"), indent=2)


if __name__ == "__main__":
    main()

"""Shared pieces of the evaluation scripts (eval_nab.py, eval_skab.py): running `vaewatch train`
and `vaewatch replay` on one series, adding up the point-wise counts of several runs and printing
the figures. Only the Python standard library is needed."""

import argparse
import json
import os
import subprocess
import sys

COUNTS = (("tp", "true_positives"), ("fp", "false_positives"), ("tn", "true_negatives"),
          ("fn", "false_negatives"), ("events", "events"), ("detected_events", "detected_events"),
          ("data_quality_opened", "data_quality_opened"))
HEADER = (f"{'prec':>5} {'rec':>5} {'f1':>5} {'far':>5} {'miss':>5} {'ev':>5} {'dq':>3}"
          f" | {'w_f1':>5} {'w_far':>5}")
"""Columns: point-wise figures with open alerts and sensor episodes as predictions, events
detected, sensor data-quality episodes opened, then F1 and false-alarm rate with `is_anomaly`
(each window above the threshold, before the alert policy) as predictions."""


def ratio(num, den):
    return num / den if den else None


def fmt(x):
    return "  n/a" if x is None else f"{x:5.3f}"


def parser(doc, data_arg):
    """Command-line options every evaluation script has; `data_arg` names the data folder."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument(data_arg)
    ap.add_argument("--vaewatch", default=os.environ.get("VAEWATCH", "target/release/vaewatch"))
    ap.add_argument("--work", default=None, help="keep intermediate files here")
    ap.add_argument("--json-out", default=None, help="write per-file and total figures here")
    ap.add_argument("--train-options", default=None,
                    help="a `vaewatch train --options` TOML file (default: built-in defaults)")
    return ap


def series_paths(work, rel):
    """Where one series' converted history goes: (name, whole series CSV, training CSV). Both
    files have the same stem, which vaewatch takes as the machine's name, so the model's
    per-machine normalisation applies to the replay."""
    name = rel.replace("/", "__").rsplit(".", 1)[0]
    os.makedirs(os.path.join(work, "train"), exist_ok=True)
    return name, os.path.join(work, name + ".csv"), os.path.join(work, "train", name + ".csv")


def evaluate(args, totals, rel, width, metrics_from, control=None):
    """Trains and replays the series `rel` (converted to `series_paths`), prints its line and
    adds it to `totals`; a failed run is printed and listed, and the evaluation goes on.
    `control`: a file of control messages for the replay (`vaewatch replay --control`)."""
    name, full, train = series_paths(args.work, rel)
    try:
        m = train_and_replay(args.vaewatch, train, full, os.path.join(args.work, name + ".model"),
                             os.path.join(args.work, name + ".replay"), metrics_from,
                             args.train_options, control)
    except subprocess.CalledProcessError as e:
        totals.fail(rel, e)
        print(f"{rel:{width}} FAILED: vaewatch {e.cmd[1]} exited with {e.returncode}")
        return
    totals.add(rel, m)
    print(f"{rel:{width}} {row(m)}")
    sys.stdout.flush()


def train_and_replay(vaewatch, train_csv, full_csv, model, out, metrics_from, options=None,
                     control=None):
    """Trains on `train_csv` (default settings, or the `vaewatch train --options` file given),
    replays `full_csv` and returns the metrics of its summary.json (counted from `metrics_from`,
    RFC 3339). Raises CalledProcessError."""
    extra = ["--options", options] if options else []
    subprocess.run([vaewatch, "train", "--input", train_csv, "--out", model, "--quiet", *extra],
                   check=True, stdout=subprocess.DEVNULL)
    replay_extra = ["--control", control] if control else []
    subprocess.run([vaewatch, "replay", "--model", model, "--input", full_csv, "--out", out,
                    "--metrics-from", metrics_from, "--no-report", *replay_extra],
                   check=True, stdout=subprocess.DEVNULL)
    with open(os.path.join(out, "summary.json")) as f:
        summary = json.load(f)
    # Sensor data-quality episodes opened in the whole replay (they count as predictions), and
    # the metrics with `is_anomaly` as the predictions.
    return {**summary["metrics"], "data_quality_opened": summary.get("data_quality_opened", 0),
            "window": summary.get("window_metrics")}


def row(m):
    """One line of figures for a run's metrics; `dq`: sensor data-quality episodes opened."""
    w = m.get("window") or {}
    return (f"{fmt(m['precision'])} {fmt(m['recall'])} {fmt(m['f1'])} "
            f"{fmt(m['false_alarm_rate'])} {fmt(m['miss_rate'])} "
            f"{m['detected_events']:>2}/{m['events']:<2} {m.get('data_quality_opened', 0):>3}"
            f" | {fmt(w.get('f1'))} {fmt(w.get('false_alarm_rate'))}")


def point_figures(c):
    """Precision, recall, F1, false-alarm and miss rates of point counts."""
    tp, fp, tn, fn = c["tp"], c["fp"], c["tn"], c["fn"]
    precision, recall = ratio(tp, tp + fp), ratio(tp, tp + fn)
    f1 = ratio(2 * precision * recall, precision + recall) if precision and recall else None
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "false_alarm_rate": ratio(fp, fp + tn),
        "miss_rate": ratio(fn, tp + fn),
    }


class Totals:
    """Point and event counts added up over runs; failed runs are listed, not counted."""

    def __init__(self):
        self.counts = {k: 0 for k, _ in COUNTS}
        self.window_counts = {k: 0 for k, _ in COUNTS[:4]}
        self.results = []
        self.failed = []

    def add(self, name, metrics):
        for k, key in COUNTS:
            self.counts[k] += metrics.get(key, 0)
        for k, key in COUNTS[:4]:
            self.window_counts[k] += (metrics.get("window") or {}).get(key, 0)
        self.results.append({"file": name, "metrics": metrics})

    def fail(self, name, error):
        self.failed.append(name)
        self.results.append({"file": name, "error": f"{error.cmd[1]} exited with {error.returncode}"})

    def summary(self):
        c = self.counts
        return {
            **c,
            **point_figures(c),
            "event_recall": ratio(c["detected_events"], c["events"]),
            "window": point_figures(self.window_counts),
            "failed_files": self.failed,
        }

    def report(self, label, width, runs, json_out=None):
        """Prints the totals line (and the failures); writes everything as JSON if asked."""
        total = self.summary()
        print(f"{label:{width}} {row(total)}")
        if self.failed:
            print(f"{len(self.failed)} of {runs} files failed and are not in the totals: "
                  + ", ".join(self.failed))
        if json_out:
            with open(json_out, "w") as f:
                json.dump({"files": self.results, "total": total}, f, indent=2)
        sys.stdout.flush()

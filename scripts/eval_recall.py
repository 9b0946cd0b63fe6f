#!/usr/bin/env python3
"""How well "has this happened before?" finds an earlier episode of the same kind of fault.

Every `opened` alert event lists the earlier episodes of its model whose opening windows had the
nearest error profiles (`similar_episodes`). This script replays a fleet whose faults have known
kinds with `--similar-episodes` high enough to list every earlier episode, and for each episode
that opened inside a labelled fault, with an earlier labelled episode of the same kind in ANOTHER
fault occurrence (another run of labelled rows, on this machine or another), asks: is the nearest
earlier labelled episode of another occurrence of the same kind? (Episodes of the same
occurrence are left out: within one fault they are trivially alike.)
It prints that hit rate beside chance (the share of same-kind episodes among the candidates, the
hit rate of a random pick) and the distances to the nearest same-kind and other-kind episodes.

Two fleets:
  skab SKAB_DIR   the 34 experiments of SKAB as 34 machines of one model trained on SKAB's
                  anomaly-free file; kinds: valve1 (16 files), valve2 (4), and the groups of
                  other/ as upstream describes them (fluid leaks and additions 1-4, rotor
                  imbalance 5-9, water amount 10-11, cavitation 12-13, hot water 14).
  sim             simulated plants (`vaewatch simulate`, several seeds) scored by the bundled
                  model; kinds: the simulator's `fault_kind`.

Usage: scripts/eval_recall.py skab SKAB_DIR [--vaewatch PATH] [--work DIR]
       scripts/eval_recall.py sim [--seeds 1,2,3] [--vaewatch PATH] [--work DIR]
Only the Python standard library is needed.
"""

import argparse
import bisect
import csv
import json
import os
import subprocess
import sys
import tempfile
from datetime import datetime, timezone

LABEL_COLUMNS = ("anomaly", "is_anomaly")
IGNORED_COLUMNS = ("datetime", "changepoint", "is_pa")
SKAB_OTHER_KINDS = {
    **{n: "fluid-leak-or-addition" for n in (1, 2, 3, 4)},
    **{n: "rotor-imbalance" for n in (5, 6, 7, 8, 9)},
    **{n: "water-amount" for n in (10, 11)},
    **{n: "cavitation" for n in (12, 13)},
    14: "hot-water",
}


def ms(text):
    return int(datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ")
               .replace(tzinfo=timezone.utc).timestamp() * 1000)


def iso_skab(text):
    ts = datetime.strptime(text.strip(), "%Y-%m-%d %H:%M:%S").replace(tzinfo=timezone.utc)
    return ts.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def skab_kind(rel):
    folder, name = os.path.split(rel)
    n = int(os.path.splitext(name)[0])
    return folder if folder in ("valve1", "valve2") else SKAB_OTHER_KINDS.get(n, f"other-{n}")


def read_skab(path):
    with open(path, newline="") as f:
        rows = [r for r in csv.reader(f, delimiter=";")]
    header, rows = [h.strip() for h in rows[0]], [r for r in rows[1:] if r]
    label = next((i for i, h in enumerate(header) if h in LABEL_COLUMNS), None)
    channels = [i for i, h in enumerate(header) if h not in IGNORED_COLUMNS and i != label]
    return header, rows, label, channels


def skab_fleet(skab_dir, work, vaewatch):
    """Writes the training file and the fleet history; returns (model dir, history path,
    {machine: kind}, {(machine, ts_ms): label})."""
    header, rows, _, channels = read_skab(os.path.join(skab_dir, "anomaly-free", "anomaly-free.csv"))
    names = [f"c{i}" for i in range(len(channels))]
    train = os.path.join(work, "skab-train.csv")
    with open(train, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["ts", *names])
        for r in rows:
            w.writerow([iso_skab(r[0]), *(r[i] for i in channels)])
    files = sorted(
        os.path.relpath(os.path.join(root, f), skab_dir)
        for root, _, found in os.walk(skab_dir)
        for f in found
        if f.endswith(".csv") and "anomaly-free" not in root
    )
    kinds, labels = {}, {}
    fleet = os.path.join(work, "skab-fleet.csv")
    with open(fleet, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["ts", "equipment_id", *names, "label"])
        for rel in files:
            machine = rel.replace("/", "-")[:-len(".csv")]
            kinds[machine] = skab_kind(rel)
            _, rows, label, channels = read_skab(os.path.join(skab_dir, rel))
            for r in rows:
                ts = iso_skab(r[0])
                flag = int(float(r[label]))
                labels[(machine, ms(ts))] = flag
                w.writerow([ts, machine, *(r[i] for i in channels), flag])
    model = os.path.join(work, "skab-model")
    subprocess.run([vaewatch, "train", "--input", train, "--out", model, "--quiet"], check=True,
                   stdout=subprocess.DEVNULL)
    return model, fleet, kinds, labels


def sim_fleet(seed, work, vaewatch):
    """A simulated plant; returns (model dir, history path, kind_at, labels)."""
    path = os.path.join(work, f"sim-{seed}.csv")
    subprocess.run([vaewatch, "simulate", "--out", path, "--machines", "6", "--duration", "48h",
                    "--faults", "30", "--seed", str(seed)], check=True, stdout=subprocess.DEVNULL)
    labels, kinds = {}, {}
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            key = (r["equipment_id"], ms(r["ts"]))
            labels[key] = int(r.get("label") or 0)
            if labels[key]:
                kinds[key] = r.get("fault_kind") or "unknown"
    model = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "models", "default")
    return model, path, kinds, labels


class Timeline:
    """Per machine, its rows' times in order with a value each; `at(m, t)` is the value of the
    last row at or before t (None before the first)."""

    def __init__(self, values):
        self.rows = {}
        for (machine, t), v in sorted(values.items()):
            times, vals = self.rows.setdefault(machine, ([], []))
            times.append(t)
            vals.append(v)

    def at(self, machine, t):
        times, vals = self.rows.get(machine, ([], []))
        i = bisect.bisect_right(times, t) - 1
        return vals[i] if i >= 0 else None


def fault_runs(labels):
    """A Timeline of each row's fault occurrence: (machine, n) for the n-th run of labelled rows
    of its machine, None outside faults."""
    runs, previous, count = {}, {}, {}
    for (machine, t), flag in sorted(labels.items()):
        if flag and not previous.get(machine):
            count[machine] = count.get(machine, 0) + 1
        previous[machine] = flag
        runs[(machine, t)] = (machine, count[machine]) if flag else None
    return Timeline(runs)


def evaluate(events, kind_of, run_of):
    """Hit rate of the nearest labelled earlier episode of another fault occurrence (another
    run of labelled rows, on this machine or another) being of the same kind."""
    def labelled(m, t):
        return run_of(m, t) is not None

    opened = {e["alert_id"]: e for e in events if e["state"] == "opened"}
    hits = trials = 0
    chance = 0.0
    same_d, other_d = [], []
    for e in opened.values():
        if not labelled(e["equipment_id"], ms(e["opened_at"])):
            continue
        kind = kind_of(e["equipment_id"], ms(e["opened_at"]))
        run = run_of(e["equipment_id"], ms(e["opened_at"]))
        candidates = [
            s for s in e.get("similar_episodes") or []
            if s["alert_id"] in opened
            and labelled(s["equipment_id"], ms(s["opened_at"]))
            and run_of(s["equipment_id"], ms(s["opened_at"])) != run
        ]
        same = [s for s in candidates if kind_of(s["equipment_id"], ms(s["opened_at"])) == kind]
        if not same:
            continue
        trials += 1
        nearest = candidates[0]
        hits += kind_of(nearest["equipment_id"], ms(nearest["opened_at"])) == kind
        chance += len(same) / len(candidates)
        same_d.append(same[0]["distance"])
        others = [s for s in candidates if s not in same]
        if others:
            other_d.append(others[0]["distance"])
    return hits, trials, chance, same_d, other_d


def median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2] if xs else float("nan")


def replay(vaewatch, model, history, out):
    subprocess.run([vaewatch, "replay", "--model", model, "--input", history, "--out", out,
                    "--no-report", "--similar-episodes", "100000"], check=True,
                   stdout=subprocess.DEVNULL)
    with open(os.path.join(out, "alerts.jsonl")) as f:
        return [json.loads(line) for line in f if line.strip()]


def report(name, result):
    hits, trials, chance, same_d, other_d = result
    if not trials:
        print(f"{name}: no labelled episode with an earlier one of its kind in another fault")
        return
    print(f"{name}: nearest is the same kind in {hits}/{trials} = {hits / trials:.2f} "
          f"(chance {chance / trials:.2f}); median distance to the nearest same-kind "
          f"{median(same_d):.3f}, to the nearest other-kind {median(other_d):.3f}")


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("fleet", choices=["skab", "sim"])
    ap.add_argument("skab_dir", nargs="?")
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--vaewatch", default="vaewatch")
    ap.add_argument("--work")
    args = ap.parse_args()
    work = args.work or tempfile.mkdtemp(prefix="vaewatch-recall-")
    os.makedirs(work, exist_ok=True)
    if args.fleet == "skab":
        if not args.skab_dir:
            sys.exit("skab needs SKAB_DIR")
        model, history, kinds, labels = skab_fleet(args.skab_dir, work, args.vaewatch)
        events = replay(args.vaewatch, model, history, os.path.join(work, "skab-replay"))
        result = evaluate(events, lambda m, t: kinds[m], fault_runs(labels).at)
        report("SKAB, 34 experiments as one fleet", result)
        return
    total = [0, 0, 0.0, [], []]
    for seed in args.seeds.split(","):
        model, history, kinds, labels = sim_fleet(int(seed), work, args.vaewatch)
        events = replay(args.vaewatch, model, history, os.path.join(work, f"sim-{seed}-replay"))

        kind_line = Timeline({k: kinds.get(k) for k in labels})
        result = evaluate(events, kind_line.at, fault_runs(labels).at)
        report(f"simulator seed {seed}", result)
        for i in range(3):
            total[i] += result[i]
        total[3] += result[3]
        total[4] += result[4]
    report("simulator, all seeds", tuple(total))


if __name__ == "__main__":
    main()

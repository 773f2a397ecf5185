"""The soak benchmark's figures: from the samples `scripts/bench.sh soak` took (one CSV line
every few seconds) and the retrainer's log, each series' slope once the rows' retention is full,
retrain durations, and (with --plot) a chart of it all.

    python soak_report.py SAMPLES.csv RETRAINER.log --rows-keep N [--plot OUT.png]

A series is flat when its slope over the run's second half (every window full by then) is small
against its level: the table gives both, and says on how many samples and retrains it rests.
"""

import argparse
import csv
import re
import sys
from datetime import datetime

SERIES = [
    ("rss_predictor_mb", "predictor RSS", "MB"),
    ("rss_retrainer_mb", "retrainer RSS", "MB"),
    ("rss_dashboard_mb", "dashboard RSS", "MB"),
    ("rows_file_mb", "rows file", "MB"),
    ("join_file_mb", "join journal", "MB"),
    ("store_mb", "bundle files (models/ + dataprocessors/)", "MB"),
    ("models_topic_mb", "census.models log segments", "MB"),
]


def slope(xs, ys):
    """Least-squares slope of ys on xs, or None with fewer than 3 points."""
    n = len(xs)
    if n < 3:
        return None
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        return None
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx


def read_samples(path):
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    out = []
    for r in rows:
        out.append({k: (float(v) if v not in ("", None) else None) for k, v in r.items()})
    return out


STAMP = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+)Z")


def counter_total(values):
    """A counter's total over a run whose service may have restarted (its counter from 0)."""
    total, prev = 0.0, 0.0
    for v in values:
        total += v - prev if v >= prev else v
        prev = v
    return total


def stamp(line):
    m = STAMP.match(line)
    if not m:
        return None
    return datetime.fromisoformat(m.group(1)[:26]).timestamp()


def retrains(log_path):
    """(start epoch s, seconds, rows trained on, how it ended) of each retrain that ended."""
    found, start, rows = [], None, None
    with open(log_path, errors="replace") as f:
        for line in f:
            t = stamp(line)
            if t is None:
                continue
            if "retraining after v" in line:
                start = t
                m = re.search(r"on (\d+) base \+ (\d+) stream rows", line)
                rows = int(m.group(1)) + int(m.group(2)) if m else None
            elif start is not None and ("stored and published" in line or "rejected offline" in line):
                found.append((start, t - start, rows, "published" if "stored and" in line else "rejected offline"))
                start = None
    return found


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("samples")
    ap.add_argument("retrainer_log")
    ap.add_argument("--rows-keep", type=int, required=True)
    ap.add_argument("--plot")
    args = ap.parse_args()

    samples = read_samples(args.samples)
    if len(samples) < 3:
        sys.exit(f"soak: only {len(samples)} samples: nothing to report")
    t0 = samples[0]["epoch_s"]
    full = next((s for s in samples if (s["rows_stored"] or 0) >= args.rows_keep), None)
    if full is None:
        print(f"soak: the rows' retention ({args.rows_keep}) never filled: slopes over the run's second half")
        filled_from = samples[len(samples) // 2]["epoch_s"]
    else:
        filled_from = full["epoch_s"]
        print(f"soak: the rows' retention ({args.rows_keep} rows) filled at {filled_from - t0:.0f} s, "
              f"after {full['predictions']:.0f} predictions")
    # Steady state: the run's second half, once every window (the rows', the joins') is full.
    steady_from = max(filled_from, (t0 + samples[-1]["epoch_s"]) / 2)
    steady = [s for s in samples if s["epoch_s"] >= steady_from]
    last = samples[-1]
    print(f"soak: {last['predictions']:.0f} predictions in {last['epoch_s'] - t0:.0f} s, "
          f"{len(samples)} samples; slopes over the second half ({len(steady)} samples, from "
          f"{steady_from - t0:.0f} s)")
    print()
    print("| series | at the fill | at half-time | at the end | max | slope over the second half, per hour | slope of its per-minute peaks |")
    print("|---|---|---|---|---|---|---|")
    for key, name, unit in SERIES:
        pts = [(s["epoch_s"], s[key]) for s in steady if s.get(key) is not None]
        every = [s[key] for s in samples if s.get(key) is not None]
        at_fill = next((s[key] for s in samples if s["epoch_s"] >= filled_from and s.get(key) is not None), None)
        if len(pts) < 3:
            print(f"| {name} | – | – | – | – | not measured ({len(pts)} samples) | – |")
            continue
        b = slope([p[0] / 3600 for p in pts], [p[1] for p in pts])
        # A sawtooth (a retrain's working memory, a journal rewritten) is judged by its peaks.
        peaks = {}
        for t, v in pts:
            minute = int((t - t0) // 60)
            peaks[minute] = max(v, peaks.get(minute, v))
        pb = slope([m / 60 for m in peaks], list(peaks.values()))
        print(f"| {name} | {at_fill:.1f} {unit} | {pts[0][1]:.1f} {unit} | {pts[-1][1]:.1f} {unit} "
              f"| {max(every):.1f} {unit} | {b:+.1f} {unit}/h "
              f"| {'–' if pb is None else f'{pb:+.1f} {unit}/h'} |")

    matched = [s["labels_matched"] for s in samples if s.get("labels_matched") is not None]
    dead = [s["labels_dead"] for s in samples if s.get("labels_dead") is not None]
    clock = [s["join_clock_lag_s"] for s in samples if s.get("join_clock_lag_s") is not None]
    lag = [s["retrainer_lag"] for s in samples if s.get("retrainer_lag") is not None]
    if matched and dead:
        print()
        print(f"labels (the retrainer's join): {counter_total(matched):.0f} matched, "
              f"{counter_total(dead):.0f} dead-lettered (by the last sample, over restarts); "
              f"the retrainer's lag up to {max(lag, default=0):.0f} records, "
              f"its join's clock up to {max(clock, default=0):.1f} s behind the wall clock "
              f"({len(clock)} samples)")

    done = retrains(args.retrainer_log)
    after = [r for r in done if r[0] >= steady_from]
    print()
    print(f"retrains ended: {len(done)} ({sum(r[3] == 'published' for r in done)} published, "
          f"{sum(r[3] != 'published' for r in done)} rejected offline); {len(after)} in the second half")
    if after:
        secs = [r[1] for r in after]
        b = slope([r[0] / 3600 for r in after], secs)
        trained = sorted({r[2] for r in after if r[2] is not None})
        print(f"retrain duration in the second half: min {min(secs):.1f} s, mean {sum(secs) / len(secs):.1f} s, "
              f"max {max(secs):.1f} s, slope {'–' if b is None else f'{b:+.1f} s/h'}; "
              f"rows trained on: {trained[0] if trained else '–'}..{trained[-1] if trained else '–'}")

    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        minutes = lambda e: (e - t0) / 60  # noqa: E731
        fig, axes = plt.subplots(3, 2, figsize=(12, 11), sharex=True)
        panels = [
            (axes[0][0], "Resident memory (MB)", SERIES[0:3]),
            (axes[0][1], "Files (MB)", SERIES[3:6]),
            (axes[1][0], "census.models log segments on the broker's disk (MB)", SERIES[6:7]),
        ]
        for ax, title, series in panels:
            for key, name, _ in series:
                pts = [(minutes(s["epoch_s"]), s[key]) for s in samples if s.get(key) is not None]
                if pts:
                    ax.plot([p[0] for p in pts], [p[1] for p in pts], label=name)
            ax.set_title(title)
            ax.axvline(minutes(filled_from), color="grey", linestyle=":", linewidth=1)
            ax.axvline(minutes(steady_from), color="grey", linestyle="--", linewidth=1)
            ax.set_ylim(bottom=0)
            ax.legend(fontsize=8, loc="upper left")
        ax = axes[1][1]
        ax.plot([minutes(r[0]) for r in done], [r[1] for r in done], "o-", markersize=3)
        ax.axvline(minutes(filled_from), color="grey", linestyle=":", linewidth=1)
        ax.set_title("Retrain duration (s), by start")
        ax.set_ylim(bottom=0)
        for ax, key, title in [
            (axes[2][0], "join_clock_lag_s", "The retrainer's join clock behind the wall clock (s)"),
            (axes[2][1], "labels_dead", "Labels dead-lettered by the retrainer (cumulative)"),
        ]:
            pts = [(minutes(s["epoch_s"]), s[key]) for s in samples if s.get(key) is not None]
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts])
            ax.set_title(title)
            ax.set_ylim(bottom=0)
        for ax in axes[2]:
            ax.set_xlabel("minutes into the run")
        fig.suptitle(
            f"Soak: {last['predictions']:.0f} predictions, {len(done)} retrains, "
            f"rows kept {args.rows_keep} (dotted: the retention full; dashed: the second half, "
            "where slopes are taken)"
        )
        fig.tight_layout()
        fig.savefig(args.plot, dpi=90)
        print(f"\nsoak: plot written to {args.plot}")


if __name__ == "__main__":
    main()

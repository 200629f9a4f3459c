#!/usr/bin/env python3
"""Compares `arenabuf bench --tsv` lines (stdin or a file) with the
performance targets of issue 4 and prints one line per target: the measured
ratio, the target, and whether it holds.

    cargo run --release -- bench --tsv > bench.tsv
    scripts/check_targets.py bench.tsv
"""
import collections
import sys

BASELINES = ("system", "mimalloc", "jemalloc")
OURS = "arenabuf-direct"


def load(lines):
    figures = collections.defaultdict(dict)  # (workload, size, threads, unit) -> impl -> value
    for line in lines:
        parts = line.rstrip("\n").split("\t")
        if len(parts) != 6:
            continue
        impl, workload, size, threads, value, unit = parts
        figures[(workload, size, int(threads), unit)][impl] = float(value)
    return figures


def ratio_to_best(row):
    best = min((row[b] for b in BASELINES if b in row), default=None)
    if best is None or OURS not in row:
        return None, None
    return row[OURS] / best, row.get("system") and row[OURS] / row["system"]


def main():
    source = open(sys.argv[1]) if len(sys.argv) > 1 else sys.stdin
    figures = load(source)
    results = []

    def check(label, value, limit):
        if value is None:
            results.append((label, None, limit, "missing"))
        else:
            results.append((label, value, limit, "ok" if value <= limit else "MISSED"))

    for size in ("64", "256", "1024", "4096", "16384", "65536"):
        row = figures.get(("hot", size, 1, "ns/op"), {})
        best, system = ratio_to_best(row)
        check(f"hot {size}: direct / best", best, 1.0)
        check(f"hot {size}: direct / system", system, 0.5)
    best, _ = ratio_to_best(figures.get(("hot", "1048576", 1, "ns/op"), {}))
    check("hot 1048576: direct / best", best, 0.5)
    for size, limit in (("4096", 0.7), ("16384", 0.7), ("65536", 0.7), ("1048576", 0.7), ("mixed", 0.7),
                        ("64", 1.0), ("256", 1.0), ("1024", 1.0)):
        best, _ = ratio_to_best(figures.get(("window", size, 1, "ns/op"), {}))
        check(f"window {size}: direct / best", best, limit)
    for size in ("64", "256", "1024", "4096", "16384", "65536", "1048576", "mixed"):
        best, _ = ratio_to_best(figures.get(("xthread", size, 1, "ns/op"), {}))
        check(f"xthread {size}: direct / best", best, 0.8)
    for size in ("64", "256", "1024", "4096", "16384", "65536", "1048576", "mixed"):
        one = figures.get(("window-mt", size, 1, "ns/op"), {}).get(OURS)
        two = figures.get(("window-mt", size, 2, "ns/op"), {}).get(OURS)
        # Throughput ratio = ops/s with 2 threads over ops/s with 1 thread.
        speedup = one / two if one and two else None
        results.append((f"window-mt {size}: 2-thread / 1-thread throughput", speedup, 1.8,
                        "missing" if speedup is None else ("ok" if speedup >= 1.8 else "MISSED")))
    peak = figures.get(("rss", "mixed", 1, "ratio"), {}).get(OURS)
    check("rss: peak RSS / live bytes", peak, 1.15)
    for label, value, limit, verdict in results:
        shown = "-" if value is None else f"{value:.2f}"
        print(f"{verdict:7} {label:50} {shown:>7}  (target {'>=' if 'throughput' in label else '<='} {limit})")
    missed = sum(1 for r in results if r[3] == "MISSED")
    print(f"{len(results) - missed} of {len(results)} targets met or missing data, {missed} missed")


if __name__ == "__main__":
    main()

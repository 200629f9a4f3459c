#!/usr/bin/env python3
"""Compares `arenabuf bench --tsv` lines (stdin or a file) with the
performance targets of issue 4 and prints one line per target: the measured
ratio, the target, and whether it holds.

    cargo run --release -- bench --tsv > bench.tsv
    scripts/check_targets.py bench.tsv

With the references `floor-wide` and `mimalloc-wide` in the input (`bench
--impl` naming them next to the rest), the `hot`, `window` and `xthread`
lines also show their ratios (on a line that compares with `system`, their
ratio to `system`): what `floor` and mimalloc reach when each buffer is
carried in a handle as large as arenabuf's; with `floor-w32` and
`mimalloc-w32`, what they reach with a 32-byte handle. A target `floor-wide`
misses is marked ("misses it too") and counted apart: `floor` with that
handle does no allocator work at all, so no allocator carrying a handle of
that size would meet the target on this machine (a reference, not a proof:
its figures move with the load like every other).

`floor` takes its blocks from `malloc`, whose 16-byte headers put the last
word a workload touches in one block next to the first word of the next
one. With `floor-packed` and `floor-packed-wide` in the input (blocks end
to end at exactly the class size, as an allocator without headers lays
them out: arenabuf, jemalloc), a target `floor-packed-wide` misses is
marked too, and counted apart when `floor-wide` meets it: out of reach for
an allocator that packs its blocks and carries arenabuf's handle.

mimalloc advises its arenas with `MADV_HUGEPAGE` under the kernel's THP
setting `madvise`, so every block it hands out sits on 2 MiB pages, while
arenabuf's default keeps buffers over 4 KiB on base pages. With
`arenabuf-huge` (arenabuf-direct with every chunk on huge pages) and
`mimalloc-nothp` (mimalloc on base pages) in the input, each line also shows
the ratio at equal page policy both ways: arenabuf-huge over the best
baseline, and arenabuf-direct over the best baseline with `mimalloc-nothp`
in mimalloc's place. A missed target that both meet is counted apart: the
miss is the page policy's, not the allocator's work.

`--callgrind FILE` adds the hot pair's target from the output of
`scripts/callgrind.sh` (arenabuf's instructions per pair, then the same
loop on the references), marked as out of reach where `floor-wide` takes
more instructions than the target allows:

    scripts/callgrind.sh > pair.txt
    scripts/check_targets.py bench.tsv --callgrind pair.txt
"""
import collections
import os
import sys

BASELINES = ("system", "mimalloc", "jemalloc")
# References with arenabuf's handle size (`bench --impl floor-wide,mimalloc-wide`)
# and with a 32-byte one (`floor-w32,mimalloc-w32`), shown next to the
# targets they bear on when the input has them.
WIDE = ("floor-wide", "mimalloc-wide", "floor-w32", "mimalloc-w32", "floor-packed", "floor-packed-wide")
# The references whose miss marks a target as out of reach for what they stand for.
FLOORS = ("floor-wide", "floor-w32", "floor-packed", "floor-packed-wide")
OURS = "arenabuf-direct"
# arenabuf-direct with every chunk on huge pages, and mimalloc on base pages
# (`bench --impl arenabuf-huge,mimalloc-nothp`).
HUGE = "arenabuf-huge"
NOTHP = "mimalloc-nothp"
# The default pool on this machine: min(2 x cores, memory / chunk / 6) arenas
# per kind (the memory term is far larger here) of 4 MiB chunks.
CHUNK_MIB = 4
ARENAS = 2 * (os.cpu_count() or 1)
# Instructions per hot alloc+release pair on a cache hit.
PAIR_TARGET = 40


def load(lines):
    figures = collections.defaultdict(dict)  # (workload, size, threads, unit) -> impl -> value
    for line in lines:
        parts = line.rstrip("\n").split("\t")
        if len(parts) != 6:
            continue
        impl, workload, size, threads, value, unit = parts
        figures[(workload, size, int(threads), unit)][impl] = float(value)
    return figures


def ratio_to_best(row, impl=OURS):
    best = min((row[b] for b in BASELINES if b in row), default=None)
    if best is None or impl not in row:
        return None, None
    return row[impl] / best, row.get("system") and row[impl] / row["system"]


def ratio_on_base_pages(row):
    """arenabuf-direct over the best baseline, with mimalloc on base pages as arenabuf-direct's larger buffers are."""
    if OURS not in row or NOTHP not in row:
        return None
    return row[OURS] / min(row[b] for b in ("system", "jemalloc", NOTHP) if b in row)


def load_pairs(lines):
    """Instructions per hot pair by implementation, from `scripts/callgrind.sh`."""
    pairs = {}
    for line in lines:
        head, _, count = line.rpartition(":")
        if not count.strip().isdigit():
            continue
        impl = OURS if head.startswith("instructions per hot") else head.strip().removeprefix("the same loop on ")
        pairs[impl] = int(count)
    return pairs


def main():
    args = sys.argv[1:]
    pairs = None
    if "--callgrind" in args:
        at = args.index("--callgrind")
        with open(args[at + 1]) as f:
            pairs = load_pairs(f)
        del args[at:at + 2]
    source = open(args[0]) if args else sys.stdin
    figures = load(source)
    results = []
    missed_by = collections.defaultdict(set)  # label -> the references that miss it too
    same_pages = set()  # labels met at equal page policy both ways

    def check(label, value, limit, floor=None, row=None, against_system=False):
        """`floor`: the same ratio for the `floor` reference, when measured;
        above the limit it says that no allocator could meet the target.
        `row`: the line's figures, for the wide references' ratios (to
        `system` when `against_system`, else to the best baseline)."""
        wide = ""
        for impl in WIDE:
            ratio = ratio_to_best(row or {}, impl)[1 if against_system else 0]
            if ratio is not None:
                wide += f"  {impl} {ratio:.2f}"
                if impl in FLOORS and ratio > limit:
                    wide += ": misses it too"
                    missed_by[label].add(impl)
        huge = ratio_to_best(row or {}, HUGE)[1 if against_system else 0]
        base = None if against_system else ratio_on_base_pages(row or {})
        if huge is not None:
            wide += f"  {HUGE} {huge:.2f}"
        if base is not None:
            wide += f"  direct/best with {NOTHP} {base:.2f}"
        if huge is not None and base is not None and huge <= limit and base <= limit:
            same_pages.add(label)
        if value is None:
            results.append((label, None, limit, "missing", floor, wide))
        else:
            results.append((label, value, limit, "ok" if value <= limit else "MISSED", floor, wide))

    for size in ("64", "256", "1024", "4096", "16384", "65536"):
        row = figures.get(("hot", size, 1, "ns/op"), {})
        best, system = ratio_to_best(row)
        floor_best, floor_system = ratio_to_best(row, "floor")
        check(f"hot {size}: direct / best", best, 1.0, floor_best, row)
        check(f"hot {size}: direct / system", system, 0.5, floor_system, row, against_system=True)
    row = figures.get(("hot", "1048576", 1, "ns/op"), {})
    check("hot 1048576: direct / best", ratio_to_best(row)[0], 0.5, ratio_to_best(row, "floor")[0], row)
    for size, limit in (("4096", 0.7), ("16384", 0.7), ("65536", 0.7), ("1048576", 0.7), ("mixed", 0.7),
                        ("64", 1.0), ("256", 1.0), ("1024", 1.0)):
        row = figures.get(("window", size, 1, "ns/op"), {})
        check(f"window {size}: direct / best", ratio_to_best(row)[0], limit, ratio_to_best(row, "floor")[0], row)
    for size in ("64", "256", "1024", "4096", "16384", "65536", "1048576", "mixed"):
        row = figures.get(("xthread", size, 1, "ns/op"), {})
        check(f"xthread {size}: direct / best", ratio_to_best(row)[0], 0.8, None, row)
    for size in ("64", "256", "1024", "4096", "16384", "65536", "1048576", "mixed"):
        one = figures.get(("window-mt", size, 1, "ns/op"), {}).get(OURS)
        two = figures.get(("window-mt", size, 2, "ns/op"), {}).get(OURS)
        # Throughput ratio = ops/s with 2 threads over ops/s with 1 thread.
        speedup = one / two if one and two else None
        floor_one = figures.get(("window-mt", size, 1, "ns/op"), {}).get("floor")
        floor_two = figures.get(("window-mt", size, 2, "ns/op"), {}).get("floor")
        floor_speedup = floor_one / floor_two if floor_one and floor_two else None
        results.append((f"window-mt {size}: 2-thread / 1-thread throughput", speedup, 1.8,
                        "missing" if speedup is None else ("ok" if speedup >= 1.8 else "MISSED"), floor_speedup, ""))
    peak = figures.get(("rss", "mixed", 1, "ratio"), {}).get(OURS)
    check("rss: peak RSS / live bytes", peak, 1.15)
    # After releasing everything nothing is live: what stays is bounded by
    # one chunk per arena (arenabuf-direct uses the direct arenas).
    after = figures.get(("rss", "mixed", 1, "MiB"), {}).get(OURS)
    check(f"rss: MiB after release + trim ({ARENAS} arenas x {CHUNK_MIB} MiB)", after, ARENAS * CHUNK_MIB)
    if pairs is not None:
        # Instructions, not a ratio; `floor` here is the floor-wide count,
        # since the target is about a pair that carries arenabuf's handle.
        label = "hot pair: instructions per alloc+release (callgrind)"
        wide = "".join(f"  {impl} {n}" for impl, n in pairs.items() if impl != OURS)
        if pairs.get("floor-wide", 0) > PAIR_TARGET:
            wide += "  (floor-wide misses it too)"
            missed_by[label].add("floor-wide")
        value = pairs.get(OURS)
        verdict = "missing" if value is None else ("ok" if value <= PAIR_TARGET else "MISSED")
        results.append((label, value, PAIR_TARGET, verdict, None, wide))
    out_of_reach = 0
    # Missed targets that floor meets but floor-wide (floor-w32) misses too.
    out_of_reach_wide = 0
    out_of_reach_w32 = 0
    # Missed targets that floor and floor-wide meet but floor-packed-wide misses.
    out_of_reach_packed = 0
    # Missed targets met at equal page policy both ways.
    page_policy = 0
    for label, value, limit, verdict, floor, wide in results:
        shown = "-" if value is None else (str(value) if isinstance(value, int) else f"{value:.2f}")
        at_least = "throughput" in label
        note = ""
        if floor is not None:
            reachable = floor >= limit if at_least else floor <= limit
            note = f"  floor {floor:.3f}" + ("" if reachable else ": out of reach on this machine")
            if verdict == "MISSED" and not reachable:
                out_of_reach += 1
        if verdict == "MISSED" and "out of reach on" not in note:
            out_of_reach_wide += "floor-wide" in missed_by.get(label, ())
            out_of_reach_w32 += "floor-w32" in missed_by.get(label, ())
            out_of_reach_packed += {"floor-wide", "floor-packed-wide"} & missed_by.get(label, set()) == {
                "floor-packed-wide"
            }
        if verdict == "MISSED" and label in same_pages:
            page_policy += 1
            wide += "  (met on equal pages both ways)"
        print(f"{verdict:7} {label:50} {shown:>7}  (target {'>=' if at_least else '<='} {limit}){note}{wide}")
    missed = sum(1 for r in results if r[3] == "MISSED")
    missing = sum(1 for r in results if r[3] == "missing")
    wide_note = f"; floor-wide misses {out_of_reach_wide} more" if out_of_reach_wide else ""
    if out_of_reach_w32:
        wide_note += f", floor-w32 {out_of_reach_w32} of those"
    if out_of_reach_packed:
        wide_note += f"; floor-packed-wide {out_of_reach_packed} more"
    if page_policy:
        wide_note += f"; {page_policy} met on equal pages both ways"
    print(f"{len(results) - missed - missing} of {len(results)} targets met, {missed} missed"
          f" ({out_of_reach} of them out of reach even for the floor reference{wide_note}), {missing} without data")
    sys.exit(0 if missed + missing == 0 else 1)


if __name__ == "__main__":
    main()

//! Runs the workloads for every implementation, interleaved, and reports
//! medians as a table, BENCH_SPEC lines or an SVG chart.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::process::Command;

use crate::impls::{
    self, Arenabuf, BufAlloc, Bytes, Floor, FloorPacked, FloorPackedWide, FloorW32, FloorWide, Jemalloc, Mimalloc,
    MimallocNoThp, MimallocW32, MimallocWide, System,
};
use crate::workloads::{self, Outcome, Size, XorShift, SEED};

/// The workloads of BENCH_SPEC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Workload {
    Hot,
    Fill,
    Window,
    WindowMt,
    Xthread,
    Rss,
}

impl Workload {
    pub const ALL: [Workload; 6] =
        [Workload::Hot, Workload::Fill, Workload::Window, Workload::WindowMt, Workload::Xthread, Workload::Rss];

    pub fn name(self) -> &'static str {
        match self {
            Workload::Hot => "hot",
            Workload::Fill => "fill",
            Workload::Window => "window",
            Workload::WindowMt => "window-mt",
            Workload::Xthread => "xthread",
            Workload::Rss => "rss",
        }
    }

    pub fn parse(name: &str) -> Option<Workload> {
        Workload::ALL.into_iter().find(|w| w.name() == name)
    }

    /// Operations per run at scale 1: enough for tens of milliseconds.
    fn ops(self, size: Size, scale: f64) -> u64 {
        let base: f64 = match self {
            Workload::Hot | Workload::Window => 400_000.0,
            // Per thread; longer, so that thread start-up and scheduling
            // noise stay small against the run.
            Workload::WindowMt => 1_600_000.0,
            Workload::Xthread => 200_000.0,
            // Writing every byte: a byte budget instead.
            Workload::Fill => (400_000.0f64).min((512u64 << 20) as f64 / size.max() as f64),
            Workload::Rss => 1.0,
        };
        (base * scale).max(1.0) as u64
    }
}

/// One implementation, ready to run any workload.
pub trait Runner {
    fn runs(&self, workload: Workload) -> bool;
    fn run(&self, workload: Workload, size: Size, threads: usize, ops: u64) -> Outcome;
    fn rss(&self) -> Vec<(String, f64, &'static str)>;
    /// [`workloads::hot_pairs`]: the loop `scripts/callgrind.sh` counts.
    fn hot_pairs(&self, pairs: u64, touch: bool) -> u64;
}

impl<A: BufAlloc> Runner for A {
    fn runs(&self, workload: Workload) -> bool {
        BufAlloc::runs(self, workload)
    }

    fn run(&self, workload: Workload, size: Size, threads: usize, ops: u64) -> Outcome {
        match workload {
            Workload::Hot => workloads::hot(self, size, ops, false),
            Workload::Fill => workloads::hot(self, size, ops, true),
            Workload::Window => workloads::window(self, size, ops, SEED),
            Workload::WindowMt => workloads::window_mt(self, size, ops, threads),
            Workload::Xthread => workloads::xthread(self, size, ops),
            Workload::Rss => unreachable!("rss runs in a child process"),
        }
    }

    fn rss(&self) -> Vec<(String, f64, &'static str)> {
        rss_workload(self)
    }

    fn hot_pairs(&self, pairs: u64, touch: bool) -> u64 {
        workloads::hot_pairs(self, pairs, touch)
    }
}

/// Builds the implementation called `name`.
pub fn make(name: &str) -> Option<Box<dyn Runner>> {
    Some(match name {
        "arenabuf-direct" | "arenabuf-nocache" | "arenabuf-huge" => Box::new(Arenabuf::<true>::new(name)),
        "arenabuf-heap" => Box::new(Arenabuf::<false>::new(name)),
        "system" => Box::new(System),
        "bytesmut" => Box::new(Bytes),
        "mimalloc" => Box::new(Mimalloc),
        "mimalloc-nothp" => Box::new(MimallocNoThp),
        "jemalloc" => Box::new(Jemalloc),
        "floor" => Box::new(Floor),
        "floor-wide" => Box::new(FloorWide::new(Floor)),
        "mimalloc-wide" => Box::new(MimallocWide::new(Mimalloc)),
        "floor-w32" => Box::new(FloorW32::new(Floor)),
        "floor-packed" => Box::new(FloorPacked),
        "floor-packed-wide" => Box::new(FloorPackedWide::new(FloorPacked)),
        "mimalloc-w32" => Box::new(MimallocW32::new(Mimalloc)),
        _ => return None,
    })
}

/// What to run.
#[derive(Debug, Clone)]
pub struct Plan {
    pub workloads: Vec<Workload>,
    pub sizes: Vec<Size>,
    pub threads: Vec<usize>,
    pub impls: Vec<String>,
    pub runs: usize,
    pub scale: f64,
}

/// One row of results: a workload at one size and thread count.
#[derive(Debug, Clone, PartialEq, PartialOrd)]
pub struct Row {
    pub workload: Workload,
    pub size: String,
    pub threads: usize,
    /// Median per implementation, with its unit.
    pub values: BTreeMap<String, (f64, &'static str)>,
    /// For rss rows: which figure.
    pub figure: &'static str,
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    }
}

/// Runs the plan; progress goes to stderr.
pub fn run(plan: &Plan) -> Vec<Row> {
    let runners: Vec<(String, Box<dyn Runner>)> =
        plan.impls.iter().map(|name| (name.clone(), make(name).expect("checked names"))).collect();
    let mut rows = Vec::new();
    for &workload in &plan.workloads {
        if workload == Workload::Rss {
            rows.extend(run_rss(&plan.impls));
            continue;
        }
        let threads: &[usize] = if workload == Workload::WindowMt { &plan.threads } else { &[1] };
        for &size in &plan.sizes {
            let ops = workload.ops(size, plan.scale);
            // Thread count -> implementation -> one figure per run.
            let mut samples: BTreeMap<usize, BTreeMap<&str, Vec<f64>>> = BTreeMap::new();
            let mut checksum = 0u64;
            // Warm-up, then runs interleaved across implementations and
            // thread counts, so that a noisy moment (on this machine, often
            // the second vCPU taken by the host) hits them all alike and
            // `window-mt`'s 2-thread figures are measured next to the
            // 1-thread figures they are divided by.
            for run in 0..=plan.runs {
                for &t in threads {
                    eprint!("\r{} {} x{} run {run}/{}   ", workload.name(), size.label(), t, plan.runs);
                    for (name, runner) in runners.iter().filter(|(_, r)| r.runs(workload)) {
                        let outcome = runner.run(workload, size, t, ops);
                        checksum = checksum.wrapping_add(outcome.checksum);
                        if run > 0 {
                            samples.entry(t).or_default().entry(name.as_str()).or_default().push(outcome.ns_per_op());
                        }
                    }
                }
            }
            eprintln!("\r{} {}: done (checksum {checksum:#x})      ", workload.name(), size.label());
            for &t in threads {
                let values = samples
                    .remove(&t)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(name, xs)| (name.to_string(), (median(xs), "ns/op")))
                    .collect();
                rows.push(Row { workload, size: size.label(), threads: t, values, figure: "" });
            }
        }
    }
    rows
}

/// BENCH_SPEC `rss`: each implementation in a fresh child process.
fn run_rss(impls: &[String]) -> Vec<Row> {
    let mut by_figure: BTreeMap<&'static str, BTreeMap<String, (f64, &'static str)>> = BTreeMap::new();
    let exe = std::env::current_exe().expect("own executable");
    for name in impls.iter().filter(|name| make(name).is_some_and(|r| r.runs(Workload::Rss))) {
        eprint!("\rrss {name}...            ");
        let out = Command::new(&exe).args(["rss-child", name]).output().expect("run rss child");
        if !out.status.success() {
            eprintln!("\rrss {name}: child failed: {}", String::from_utf8_lossy(&out.stderr));
            continue;
        }
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let f: Vec<&str> = line.split('\t').collect();
            if f.len() != 6 {
                continue;
            }
            let value: f64 = f[4].parse().unwrap_or(f64::NAN);
            let figure = match (f[1], f[5]) {
                ("rss", "ratio") => "peak/live",
                ("rss", _) => "after MiB",
                _ => "pool/live",
            };
            let unit = if f[5] == "MiB" { "MiB" } else { "ratio" };
            by_figure.entry(figure).or_default().insert(name.clone(), (value, unit));
        }
    }
    eprintln!("\rrss: done                    ");
    by_figure
        .into_iter()
        .map(|(figure, values)| Row { workload: Workload::Rss, size: "mixed".into(), threads: 1, values, figure })
        .collect()
}

/// Resident set size of this process, in bytes.
fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    pages * 4096
}

/// The `rss` workload in this (child) process; lines as BENCH_SPEC says.
fn rss_workload<A: BufAlloc>(imp: &A) -> Vec<(String, f64, &'static str)> {
    const TARGET: usize = 512 << 20;
    // Room for every live buffer, touched before the baseline is read.
    let mut live: Vec<Option<(A::Buf, usize)>> = Vec::new();
    live.resize_with(200_000, || None);
    live.clear();
    let before = resident_bytes();
    let mut rng = XorShift::new(SEED);
    let mut live_bytes = 0usize;
    let mut fill = |live: &mut Vec<Option<(A::Buf, usize)>>, live_bytes: &mut usize| {
        while *live_bytes < TARGET {
            let size = Size::Mixed.draw(&mut rng);
            let mut buf = imp.alloc(size);
            // SAFETY: `ptr` starts at least `size` writable bytes.
            unsafe { A::ptr(&mut buf).write_bytes(0x5A, size) };
            live.push(Some((buf, size)));
            *live_bytes += size;
        }
    };
    fill(&mut live, &mut live_bytes);
    let mut coin = XorShift::new(SEED ^ 0xFFFF);
    for slot in live.iter_mut() {
        if coin.next() & 1 == 1 {
            if let Some((buf, size)) = slot.take() {
                imp.release(buf);
                live_bytes -= size;
            }
        }
    }
    live.retain(Option::is_some);
    fill(&mut live, &mut live_bytes);
    let peak = resident_bytes();
    let pool = imp.pool_used();
    for (buf, _) in live.drain(..).flatten() {
        imp.release(buf);
    }
    // The bookkeeping goes too: its size differs between implementations.
    drop(live);
    imp.trim();
    let after = resident_bytes();
    let mut lines = vec![
        ("rss".to_string(), (peak.saturating_sub(before)) as f64 / live_bytes as f64, "ratio"),
        ("rss".to_string(), after as f64 / (1 << 20) as f64, "MiB"),
    ];
    if let Some(pool) = pool {
        lines.push(("pool".to_string(), pool as f64 / live_bytes as f64, "ratio"));
    }
    lines
}

/// `arenabuf rss-child IMPL`: runs `rss` for one implementation and prints
/// BENCH_SPEC lines.
pub fn rss_child(name: &str) {
    let runner = make(name).unwrap_or_else(|| panic!("unknown implementation {name}"));
    for (workload, value, unit) in runner.rss() {
        println!("{name}\t{workload}\tmixed\t1\t{value:.4}\t{unit}");
    }
}

/// BENCH_SPEC lines: `impl workload size threads value unit`.
pub fn tsv(rows: &[Row]) -> String {
    let mut out = String::new();
    for row in rows {
        for (name, (value, unit)) in &row.values {
            let workload =
                if row.workload == Workload::Rss && row.figure == "pool/live" { "pool" } else { row.workload.name() };
            let _ = writeln!(out, "{name}\t{workload}\t{}\t{}\t{value:.4}\t{unit}", row.size, row.threads);
        }
    }
    out
}

/// arenabuf-direct's figure over the best non-arenabuf figure of a row.
pub fn ratio_to_best(row: &Row, name: &str) -> Option<f64> {
    let ours = row.values.get(name)?.0;
    let best = row
        .values
        .iter()
        .filter(|(n, _)| impls::is_baseline(n))
        .map(|(_, (v, _))| *v)
        .filter(|v| v.is_finite())
        .min_by(f64::total_cmp)?;
    Some(ours / best)
}

/// The human table: rows = workload and size, columns = implementations.
pub fn table(rows: &[Row], impls: &[String]) -> String {
    let mut out = String::new();
    let _ = write!(out, "{:<10} {:>7} {:>3}", "workload", "size", "thr");
    for name in impls {
        let _ = write!(out, " {:>16}", name);
    }
    let _ = writeln!(out, " {:>10}", "direct/best");
    for row in rows {
        let label =
            if row.workload == Workload::Rss { format!("rss {}", row.figure) } else { row.workload.name().into() };
        let _ = write!(out, "{:<10} {:>7} {:>3}", label, row.size, row.threads);
        for name in impls {
            match row.values.get(name) {
                Some((v, _)) => {
                    let _ = write!(out, " {:>16.2}", v);
                }
                None => {
                    let _ = write!(out, " {:>16}", "-");
                }
            }
        }
        match ratio_to_best(row, "arenabuf-direct") {
            Some(r) => {
                let _ = writeln!(out, " {:>10.2}", r);
            }
            None => {
                let _ = writeln!(out, " {:>10}", "-");
            }
        }
    }
    let _ = writeln!(out, "(ns/op unless the row says otherwise; direct/best = arenabuf-direct over the best of system, bytesmut, mimalloc, jemalloc; lower is better)");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::impls::{ALL, EXTRA};

    /// Every name the command line accepts builds an implementation, which
    /// runs the workloads it claims to and reads back what they wrote (the
    /// checksums depend only on those bytes, so they match `floor`'s, or
    /// `system`'s where `floor` does not run).
    #[test]
    fn every_listed_implementation_builds_and_runs() {
        let (floor, system) = (make("floor").expect("floor"), make("system").expect("system"));
        let cases = [
            (Workload::Hot, Size::Fixed(256), 1),
            (Workload::Window, Size::Fixed(1024), 1),
            (Workload::Window, Size::Mixed, 1),
            (Workload::WindowMt, Size::Fixed(4096), 2),
            (Workload::Xthread, Size::Fixed(256), 1),
        ];
        for name in ALL.iter().chain(&EXTRA) {
            let runner = make(name).unwrap_or_else(|| panic!("{name} is listed but not built"));
            for &(workload, size, threads) in &cases {
                if !runner.runs(workload) {
                    continue;
                }
                let ops = 20_000;
                let got = runner.run(workload, size, threads, ops).checksum;
                let reference = if floor.runs(workload) { &floor } else { &system };
                let want = reference.run(workload, size, threads, ops).checksum;
                assert_eq!(got, want, "{name}: {} {} x{threads}", workload.name(), size.label());
            }
        }
    }

    /// Fills every live block of `imp` whole with its own byte, then checks
    /// them all: a block shorter than asked, or overlapping another, fails.
    fn blocks_are_whole_and_disjoint<A: BufAlloc>(imp: &A) {
        let mut rng = XorShift::new(SEED);
        for _round in 0..3 {
            let mut live: Vec<(A::Buf, usize, u8)> = (0..600)
                .map(|i| {
                    let size = Size::Mixed.draw(&mut rng) % 70_000 + 1;
                    let mut buf = imp.alloc(size);
                    let byte = (i % 251) as u8;
                    // SAFETY: the block has at least `size` writable bytes.
                    unsafe { A::ptr(&mut buf).write_bytes(byte, size) };
                    (buf, size, byte)
                })
                .collect();
            for (buf, size, byte) in &mut live {
                // SAFETY: as above; written whole just before.
                let bytes = unsafe { std::slice::from_raw_parts(A::ptr(buf), *size) };
                assert!(bytes.iter().all(|b| b == byte), "a block of {size} bytes was overwritten");
            }
            // Half back in a scattered order, the rest in order: reuse mixes them.
            let (odd, even): (Vec<_>, Vec<_>) = live.into_iter().enumerate().partition(|(i, _)| i % 2 == 1);
            odd.into_iter().chain(even).for_each(|(_, (buf, _, _))| imp.release(buf));
        }
    }

    #[test]
    fn floor_blocks_are_whole_and_disjoint() {
        blocks_are_whole_and_disjoint(&Floor);
        blocks_are_whole_and_disjoint(&FloorPacked);
        blocks_are_whole_and_disjoint(&FloorPackedWide::new(FloorPacked));
    }
}

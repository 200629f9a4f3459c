//! The `arenabuf` command.
//!
//! * `arenabuf` (no arguments): the quick benchmark table: `hot`, `window`
//!   and `xthread` at 256 B, 4 KiB, 64 KiB and `mixed`, plus `rss`, for every
//!   implementation (under two minutes on two cores).
//! * `arenabuf bench [--workload W] [--size S] [--threads T] [--impl I]
//!   [--runs N] [--scale F] [--tsv] [--svg FILE]`: any BENCH_SPEC workloads;
//!   lists are comma-separated or the flag repeated. Every implementation
//!   runs unless `--impl` names some; the references `floor-wide`,
//!   `mimalloc-wide`, `floor-w32` and `mimalloc-w32` (see `impls::Wide`),
//!   `floor-packed` and `floor-packed-wide` (see `impls::FloorPacked`),
//!   `arenabuf-huge` (every chunk on huge pages, see `impls::Arenabuf`) and
//!   `mimalloc-nothp` (mimalloc on base pages, see `impls::MimallocNoThp`)
//!   run only when named.
//! * `arenabuf classes`, `arenabuf demo`: the size-class table, a pool walk.
//! * `arenabuf stats [--svg FILE]`: a mixed workload, `dump_stats()`, and a
//!   picture of every chunk.
//! * `arenabuf hot-loop N [IMPL]`: N hot 256-byte pairs on one
//!   implementation, arenabuf-direct unless named (for
//!   `scripts/callgrind.sh`).
//!
//! Progress goes to stderr, results to stdout.

#![deny(clippy::undocumented_unsafe_blocks)]

mod demo;
mod harness;
mod impls;
mod stats;
mod svg;
mod workloads;

use std::process::exit;

use harness::{Plan, Workload};
use workloads::Size;

const USAGE: &str = "usage: arenabuf [bench [--workload W] [--size S] [--threads T] [--impl I] [--runs N] [--scale F] [--tsv] [--svg FILE] | classes | demo | stats [--svg FILE] | hot-loop N [IMPL]]";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        None => {
            quick();
            Ok(())
        }
        Some("bench") => bench(&args[1..]),
        Some("rss-child") => {
            harness::rss_child(args.get(1).map_or("", String::as_str));
            Ok(())
        }
        Some("hot-loop") => hot_loop(
            args.get(1).and_then(|n| n.parse().ok()).unwrap_or(1000),
            args.get(2).map_or("arenabuf-direct", String::as_str),
        ),
        Some("classes") => {
            demo::print_size_classes();
            Ok(())
        }
        Some("demo") => {
            demo::run();
            Ok(())
        }
        Some("stats") => {
            stats::run(&args[1..]);
            Ok(())
        }
        Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            Ok(())
        }
        Some(other) => Err(format!("unknown command {other:?}")),
    };
    if let Err(message) = result {
        eprintln!("arenabuf: {message}\n{USAGE}");
        exit(2);
    }
}

fn all_impls() -> Vec<String> {
    impls::ALL.iter().map(|s| s.to_string()).collect()
}

fn quick() {
    let plan = Plan {
        workloads: vec![Workload::Hot, Workload::Window, Workload::Xthread, Workload::Rss],
        sizes: vec![Size::Fixed(256), Size::Fixed(4096), Size::Fixed(65536), Size::Mixed],
        threads: vec![1],
        impls: all_impls(),
        runs: 5,
        scale: 1.0,
    };
    let rows = harness::run(&plan);
    print!("{}", harness::table(&rows, &plan.impls));
}

fn bench(args: &[String]) -> Result<(), String> {
    use lexopt::prelude::*;
    let mut parser = lexopt::Parser::from_args(args.iter());
    let (mut workloads, mut sizes, mut threads, mut names) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut runs, mut scale, mut tsv_out, mut svg_file) = (5usize, 1.0f64, false, None);
    let text = |v: std::ffi::OsString| v.into_string().map_err(|_| "arguments must be UTF-8".to_string());
    while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
        match arg {
            Long("workload") => {
                for w in text(parser.value().map_err(|e| e.to_string())?)?.split(',') {
                    workloads.push(Workload::parse(w).ok_or(format!("unknown workload {w:?}"))?);
                }
            }
            Long("size") => {
                for s in text(parser.value().map_err(|e| e.to_string())?)?.split(',') {
                    sizes.push(if s == "mixed" {
                        Size::Mixed
                    } else {
                        Size::Fixed(s.parse().map_err(|_| format!("bad size {s:?}"))?)
                    });
                }
            }
            Long("threads") => {
                for t in text(parser.value().map_err(|e| e.to_string())?)?.split(',') {
                    threads.push(t.parse().map_err(|_| format!("bad thread count {t:?}"))?);
                }
            }
            Long("impl") => {
                for i in text(parser.value().map_err(|e| e.to_string())?)?.split(',') {
                    if !impls::ALL.contains(&i) && !impls::EXTRA.contains(&i) {
                        let known = impls::ALL.iter().chain(&impls::EXTRA).copied().collect::<Vec<_>>().join(", ");
                        return Err(format!("unknown implementation {i:?} (known: {known})"));
                    }
                    names.push(i.to_string());
                }
            }
            Long("runs") => {
                runs = parser.value().map_err(|e| e.to_string())?.parse().map_err(|e: lexopt::Error| e.to_string())?
            }
            Long("scale") => {
                scale = parser.value().map_err(|e| e.to_string())?.parse().map_err(|e: lexopt::Error| e.to_string())?
            }
            Long("tsv") => tsv_out = true,
            Long("svg") => svg_file = Some(text(parser.value().map_err(|e| e.to_string())?)?),
            other => return Err(other.unexpected().to_string()),
        }
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let plan = Plan {
        workloads: if workloads.is_empty() { Workload::ALL.to_vec() } else { workloads },
        sizes: if sizes.is_empty() {
            [64, 256, 1024, 4096, 16384, 65536, 1 << 20].map(Size::Fixed).into_iter().chain([Size::Mixed]).collect()
        } else {
            sizes
        },
        threads: if threads.is_empty() { (1..=cores).collect() } else { threads },
        impls: if names.is_empty() { all_impls() } else { names },
        runs: runs.max(1),
        scale,
    };
    let rows = harness::run(&plan);
    if tsv_out {
        print!("{}", harness::tsv(&rows));
    } else {
        print!("{}", harness::table(&rows, &plan.impls));
    }
    if let Some(file) = svg_file {
        std::fs::write(&file, svg::chart(&rows, &plan.impls)).map_err(|e| format!("writing {file}: {e}"))?;
        eprintln!("wrote {file}");
    }
    Ok(())
}

/// N hot alloc+release pairs of 256 bytes on `impl_name` (default
/// `arenabuf-direct`): the loop that `scripts/callgrind.sh` counts the
/// instructions of. `HOT_LOOP_TOUCH` set writes 8 bytes at each end of
/// every buffer.
fn hot_loop(pairs: u64, impl_name: &str) -> Result<(), String> {
    let runner = harness::make(impl_name).ok_or_else(|| format!("unknown implementation {impl_name:?}"))?;
    let touch = std::env::var_os("HOT_LOOP_TOUCH").is_some();
    let checksum = runner.hot_pairs(pairs, touch);
    println!("{impl_name}: {pairs} pairs, checksum {checksum:#x}");
    Ok(())
}

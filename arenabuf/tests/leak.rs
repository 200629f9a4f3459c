//! The leak detector through the public API.

use arenabuf::{ByteBuf, LeakLevel, PooledAllocator};

fn pool(level: LeakLevel) -> PooledAllocator {
    PooledAllocator::builder().heap_arenas(1).direct_arenas(1).leak_detection(level).build().unwrap()
}

#[test]
fn a_forgotten_buffer_is_reported_with_its_allocation_site_in_this_function() {
    let alloc = pool(LeakLevel::Paranoid);
    let clean = alloc.heap_buffer(64);
    drop(clean);
    let leaked = alloc.direct_buffer(777);
    leaked.touch("handed to the codec");
    std::mem::forget(leaked);
    let report = alloc.leak_report();
    assert_eq!((report.len(), report.num_sites()), (1, 1));
    let text = report.to_string();
    assert!(text.contains("a_forgotten_buffer_is_reported_with_its_allocation_site_in_this_function"), "{text}");
    assert!(text.contains("1 buffer(s) of 777 B"), "{text}");
    assert!(text.contains("handed to the codec"), "{text}");
    assert!(text.contains("level PARANOID"), "{text}");
}

#[test]
fn a_buffer_in_a_reference_cycle_is_reported() {
    use std::cell::RefCell;
    use std::rc::Rc;

    struct Node {
        _buf: ByteBuf,
        next: RefCell<Option<Rc<Node>>>,
    }
    let alloc = pool(LeakLevel::Paranoid);
    let a = Rc::new(Node { _buf: alloc.heap_buffer(10), next: RefCell::new(None) });
    let b = Rc::new(Node { _buf: alloc.heap_buffer(20), next: RefCell::new(Some(a.clone())) });
    *a.next.borrow_mut() = Some(b.clone());
    drop((a, b));
    assert_eq!(alloc.leak_report().len(), 2);
}

#[test]
fn reports_are_deduplicated_by_allocation_site() {
    let alloc = pool(LeakLevel::Paranoid);
    for size in [10, 20, 30] {
        std::mem::forget(alloc.heap_buffer(size));
    }
    std::mem::forget(alloc.heap_buffer(40));
    let report = alloc.leak_report();
    assert_eq!((report.len(), report.num_sites()), (4, 2));
    assert!(report.to_string().contains("3 buffer(s) of 10 / 20 / 30 B (60 B in all)"), "{report}");
}

#[test]
fn advanced_keeps_the_newest_access_records() {
    let alloc = pool(LeakLevel::Advanced);
    // Advanced samples like Simple: allocate until one is tracked.
    let mut held = Vec::new();
    while alloc.leak_report().is_empty() {
        held.push(alloc.heap_buffer(32));
    }
    for buf in &held {
        for step in 0..6 {
            buf.touch(format_args!("step {step}"));
        }
    }
    let text = alloc.leak_report().to_string();
    assert!(text.contains("\"step 5\""), "{text}");
    assert_eq!(text.matches("\"step ").count(), 4, "{text}");
}

#[test]
fn the_report_is_logged_on_stderr_when_the_last_handle_drops() {
    const CHILD: &str = "ARENABUF_LEAK_TEST_CHILD";
    if std::env::var_os(CHILD).is_some() {
        let alloc = pool(LeakLevel::Paranoid);
        std::mem::forget(alloc.heap_buffer(4321));
        let clone = alloc.clone();
        drop(alloc);
        eprintln!("-- first handle dropped --");
        drop(clone);
        return;
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "the_report_is_logged_on_stderr_when_the_last_handle_drops",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let (before, after) = stderr.split_once("-- first handle dropped --").expect("the child ran");
    assert!(!before.contains("LEAK"), "only the last handle reports: {stderr}");
    assert!(after.contains("arenabuf: LEAK: 1 buffer(s) of 4321 B"), "{stderr}");
    assert!(after.contains("the_report_is_logged_on_stderr_when_the_last_handle_drops"), "{stderr}");
}

#[test]
fn a_clean_paranoid_run_of_a_million_buffers_on_two_threads_reports_nothing() {
    let alloc = pool(LeakLevel::Paranoid);
    let workers: Vec<_> = (0..2)
        .map(|t| {
            let alloc = alloc.clone();
            std::thread::spawn(move || {
                let mut window: Vec<ByteBuf> = Vec::with_capacity(16);
                for i in 0..500_000usize {
                    let buf = if i % 2 == 0 { alloc.heap_buffer(16 + i % 64) } else { alloc.direct_buffer(32) };
                    if i % 7 == t {
                        buf.touch("window");
                    }
                    if window.len() == 16 {
                        window.swap_remove(i % 16);
                    }
                    window.push(buf);
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().unwrap();
    }
    let report = alloc.leak_report();
    assert!(report.is_empty(), "{report}");
}

#[test]
fn simple_level_reports_the_calling_line_and_tracking_survives_growth() {
    let alloc = pool(LeakLevel::Simple);
    let mut held = Vec::new();
    while alloc.leak_report().is_empty() {
        held.push(alloc.heap_buffer(100)); // sampled about one in 128
    }
    let mut tracked = held.pop().unwrap();
    drop(held);
    tracked.ensure_writable(10_000); // moves to a larger region
    std::mem::forget(tracked);
    let text = alloc.leak_report().to_string();
    assert!(text.contains("tests/leak.rs:"), "the allocation line, not a backtrace: {text}");
    assert_eq!(alloc.leak_report().len(), 1, "{text}");
}

//! A grouped bar chart of the ratios, drawn as plain SVG: one group per
//! result row, one bar per implementation, each bar that implementation's
//! figure over the best non-arenabuf figure of the row (1.0 = the best
//! baseline; lower is better).

use std::fmt::Write as _;

use crate::harness::{ratio_to_best, Row};

const COLORS: [&str; 7] = ["#1b9e77", "#66a61e", "#a6d854", "#7570b3", "#e7298a", "#d95f02", "#e6ab02"];

pub fn chart(rows: &[Row], impls: &[String]) -> String {
    let groups: Vec<(&Row, Vec<f64>)> = rows
        .iter()
        .map(|row| (row, impls.iter().map(|name| ratio_to_best(row, name).unwrap_or(f64::NAN)).collect()))
        .collect();
    let max = groups.iter().flat_map(|(_, rs)| rs.iter().copied()).filter(|r| r.is_finite()).fold(1.5f64, f64::max);
    let (bar_w, gap, plot_h, left, top) = (10.0, 16.0, 300.0, 60.0, 40.0);
    let group_w = bar_w * impls.len() as f64 + gap;
    let width = left + group_w * groups.len() as f64 + 20.0;
    let height = top + plot_h + 110.0 + 18.0 * impls.len() as f64;
    let y = |r: f64| top + plot_h - r / max * plot_h;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(
        s,
        r#"<text x="{left}" y="20" font-size="14">arenabuf benchmark: figure / best of system, bytesmut, mimalloc, jemalloc (lower is better)</text>"#
    );
    for tick in 0..=((max * 2.0).ceil() as usize) {
        let r = tick as f64 / 2.0;
        let _ = writeln!(
            s,
            r##"<line x1="{left}" x2="{:.1}" y1="{:.1}" y2="{:.1}" stroke="{}" />"##,
            width - 10.0,
            y(r),
            y(r),
            if tick == 2 { "#000" } else { "#ddd" }
        );
        let _ = writeln!(s, r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{r:.1}</text>"#, left - 4.0, y(r) + 4.0);
    }
    for (g, (row, ratios)) in groups.iter().enumerate() {
        let x0 = left + gap / 2.0 + g as f64 * group_w;
        for (i, r) in ratios.iter().enumerate() {
            if !r.is_finite() {
                continue;
            }
            let x = x0 + i as f64 * bar_w;
            let _ = writeln!(
                s,
                r#"<rect x="{x:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{}"><title>{} {}: {r:.2}</title></rect>"#,
                y(*r),
                bar_w - 1.0,
                top + plot_h - y(*r),
                COLORS[i % COLORS.len()],
                impls[i],
                row.size
            );
        }
        let label = format!(
            "{} {}{}",
            row.workload.name(),
            row.size,
            if row.threads > 1 { format!(" x{}", row.threads) } else { String::new() }
        );
        let (lx, ly) = (x0 + group_w / 2.0 - gap / 2.0, top + plot_h + 8.0);
        let _ = writeln!(s, r#"<text x="{lx:.1}" y="{ly:.1}" transform="rotate(60 {lx:.1} {ly:.1})">{label}</text>"#);
    }
    for (i, name) in impls.iter().enumerate() {
        let ly = top + plot_h + 100.0 + 18.0 * i as f64;
        let _ = writeln!(
            s,
            r#"<rect x="{left}" y="{:.1}" width="12" height="12" fill="{}" />"#,
            ly - 10.0,
            COLORS[i % COLORS.len()]
        );
        let _ = writeln!(s, r#"<text x="{:.1}" y="{ly:.1}">{name}</text>"#, left + 18.0);
    }
    s.push_str("</svg>\n");
    s
}

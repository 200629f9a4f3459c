//! A picture of the pool: every chunk of every arena as a strip of pages
//! coloured by what they hold, so that fragmentation shows at a glance.
//!
//! Each page is one `<rect>` with `data-page` (its index in the chunk) and
//! `data-state` (`free`, `run` or `subpage`); each chunk is a `<g>` with
//! `data-chunk` (its index in the picture), `data-kind`, `data-arena`,
//! `data-list`, `data-usage` and `data-dense`, so tools and tests can read
//! the picture back. Subpage pages are shaded by how full their subpage is.

use std::fmt::Write;

use crate::metric::{AllocatorMetric, RunState};

/// Width of a chunk's strip of pages, in pixels.
const STRIP_WIDTH: f64 = 1024.0;
/// Height of one strip, and the gap between strips.
const STRIP_HEIGHT: f64 = 14.0;
const STRIP_GAP: f64 = 6.0;
/// Room on the left for the chunk's label.
const LABEL_WIDTH: f64 = 260.0;
const MARGIN: f64 = 10.0;
/// Room at the top for the title and the legend.
const HEADER: f64 = 48.0;

const FREE_COLOUR: &str = "#e6e6e6";
const RUN_COLOUR: &str = "#3b6fb6";

/// The colour of a subpage page: from pale green (empty) to dark green (full).
fn subpage_colour(used: usize, max: usize) -> String {
    let fill = if max == 0 { 1.0 } else { used as f64 / max as f64 };
    let (pale, dark) = ((0xc7, 0xe9, 0xc0), (0x00, 0x6d, 0x2c));
    let mix = |a: u8, b: u8| (f64::from(a) + (f64::from(b) - f64::from(a)) * fill).round() as u8;
    format!("#{:02x}{:02x}{:02x}", mix(pale.0, dark.0), mix(pale.1, dark.1), mix(pale.2, dark.2))
}

/// Draws every chunk of every arena of `metric` as an SVG document: one
/// strip of pages per chunk, grey for free pages, blue for runs handed out
/// whole, green for subpages, darker the fuller.
///
/// # Examples
///
/// ```
/// let alloc = arenabuf::PooledAllocator::builder().heap_arenas(1).direct_arenas(0).build()?;
/// let _bufs = (alloc.heap_buffer(100), alloc.heap_buffer(100_000));
/// let svg = arenabuf::chunks_svg(&alloc.metric());
/// assert!(svg.starts_with("<svg"));
/// // The 100-byte buffer's chunk is dense (see `HugePages::Dense`).
/// assert_eq!(svg.matches("<g data-chunk=").count(), 2);
/// assert_eq!(svg.matches(r#"data-dense="true""#).count(), 1);
/// assert_eq!(svg.matches("<rect data-page=").count(), 1024);
/// # Ok::<(), arenabuf::ConfigError>(())
/// ```
#[must_use]
pub fn chunks_svg(metric: &AllocatorMetric) -> String {
    let mut strips = Vec::new();
    for (kind, arenas) in [("heap", metric.heap_arenas()), ("direct", metric.direct_arenas())] {
        for (arena_index, arena) in arenas.iter().enumerate() {
            for list in arena.chunk_lists() {
                for chunk in list.chunks() {
                    strips.push((kind, arena_index, list.name(), chunk));
                }
            }
        }
    }
    let height = HEADER + strips.len() as f64 * (STRIP_HEIGHT + STRIP_GAP) + MARGIN;
    let width = MARGIN + LABEL_WIDTH + STRIP_WIDTH + MARGIN;
    let mut svg = String::new();
    // Writing to a String cannot fail.
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="monospace" font-size="11">"#
    );
    let _ = writeln!(
        svg,
        r#"<text x="{MARGIN}" y="16">arenabuf chunks: {} chunk(s) of {} B; used heap {} B, used direct {} B</text>"#,
        strips.len(),
        metric.chunk_size(),
        metric.used_heap_memory(),
        metric.used_direct_memory()
    );
    let legend = [
        (FREE_COLOUR.to_owned(), "free"),
        (RUN_COLOUR.to_owned(), "run"),
        (subpage_colour(1, 4), "subpage, 25 % used"),
        (subpage_colour(4, 4), "subpage, full"),
    ];
    let mut x = MARGIN;
    for (colour, label) in &legend {
        let _ = writeln!(svg, r##"<rect x="{x}" y="26" width="12" height="12" fill="{colour}" stroke="#888"/>"##);
        let _ = writeln!(svg, r#"<text x="{}" y="36">{}</text>"#, x + 16.0, escape(label));
        x += 40.0 + 8.0 * label.len() as f64;
    }
    for (row, (kind, arena_index, list, chunk)) in strips.iter().enumerate() {
        let y = HEADER + row as f64 * (STRIP_HEIGHT + STRIP_GAP);
        let pages = chunk.num_pages().max(1);
        let page_width = STRIP_WIDTH / pages as f64;
        let _ = writeln!(
            svg,
            r#"<g data-chunk="{row}" data-kind="{kind}" data-arena="{arena_index}" data-list="{list}" data-usage="{}" data-dense="{}">"#,
            chunk.usage(),
            chunk.is_dense()
        );
        let _ = writeln!(
            svg,
            "<title>{kind} arena {arena_index}, {list}{}: usage {}%, {} of {} B free</title>",
            if chunk.is_dense() { ", dense" } else { "" },
            chunk.usage(),
            chunk.free_bytes(),
            chunk.chunk_size()
        );
        let _ = writeln!(
            svg,
            r#"<text x="{MARGIN}" y="{}">{kind} {arena_index} {list} {}%</text>"#,
            y + STRIP_HEIGHT - 3.0,
            chunk.usage()
        );
        for run in chunk.runs() {
            let (state, colour) = match run.state() {
                RunState::Free => ("free", FREE_COLOUR.to_owned()),
                RunState::Used => ("run", RUN_COLOUR.to_owned()),
                RunState::Subpage { max_num_elements, num_available, .. } => {
                    ("subpage", subpage_colour(max_num_elements - num_available, max_num_elements))
                }
            };
            for page in run.first_page()..run.first_page() + run.pages() {
                let px = MARGIN + LABEL_WIDTH + f64::from(page) * page_width;
                let _ = writeln!(
                    svg,
                    r#"<rect data-page="{page}" data-state="{state}" x="{px:.2}" y="{y}" width="{page_width:.2}" height="{STRIP_HEIGHT}" fill="{colour}"/>"#
                );
            }
        }
        let _ = writeln!(
            svg,
            r##"<rect x="{}" y="{y}" width="{STRIP_WIDTH}" height="{STRIP_HEIGHT}" fill="none" stroke="#888"/>"##,
            MARGIN + LABEL_WIDTH
        );
        svg.push_str("</g>\n");
    }
    svg.push_str("</svg>\n");
    svg
}

/// Escapes text for XML content and attribute values.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subpage_colours_darken_as_they_fill() {
        assert_eq!(subpage_colour(0, 16), "#c7e9c0");
        assert_eq!(subpage_colour(16, 16), "#006d2c");
        assert_eq!(escape("a<b & \"c\""), "a&lt;b &amp; &quot;c&quot;");
    }
}

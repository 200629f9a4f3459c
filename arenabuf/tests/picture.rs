//! The SVG picture: well-formed XML showing every chunk and every page.

use arenabuf::{ByteBuf, PooledAllocator};

/// Checks that `doc` is well-formed XML in the subset the picture uses
/// (elements, quoted attributes, text, the five predefined entities): tags
/// nest and match, attribute values are quoted and unique per element,
/// and no raw `<` or `&` appears in text. Returns the element count.
fn check_well_formed(doc: &str) -> Result<usize, String> {
    fn check_text(text: &str) -> Result<(), String> {
        let mut rest = text;
        while let Some(at) = rest.find('&') {
            let entity = &rest[at..];
            if !["&lt;", "&gt;", "&amp;", "&quot;", "&apos;"].iter().any(|e| entity.starts_with(e)) {
                return Err(format!("bad entity at {:?}", &entity[..entity.len().min(10)]));
            }
            rest = &rest[at + 1..];
        }
        if text.contains('>') && text.contains('<') {
            return Err("markup in text".into());
        }
        Ok(())
    }
    let mut stack: Vec<String> = Vec::new();
    let mut elements = 0;
    let mut rest = doc;
    let mut seen_root = false;
    while let Some(open) = rest.find('<') {
        check_text(&rest[..open])?;
        let close = rest[open..].find('>').ok_or("unclosed tag")? + open;
        let tag = &rest[open + 1..close];
        rest = &rest[close + 1..];
        if let Some(name) = tag.strip_prefix('/') {
            let top = stack.pop().ok_or(format!("</{name}> without an open tag"))?;
            if top != name.trim() {
                return Err(format!("</{name}> closes <{top}>"));
            }
            continue;
        }
        if stack.is_empty() && seen_root {
            return Err("a second root element".into());
        }
        seen_root = true;
        elements += 1;
        let self_closing = tag.ends_with('/');
        let body = tag.trim_end_matches('/');
        let name_end = body.find(char::is_whitespace).unwrap_or(body.len());
        let name = &body[..name_end];
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == ':') {
            return Err(format!("bad element name {name:?}"));
        }
        let mut attrs = body[name_end..].trim();
        let mut names = Vec::new();
        while !attrs.is_empty() {
            let eq = attrs.find('=').ok_or(format!("attribute without value in <{name}>"))?;
            let attr = attrs[..eq].trim();
            if names.contains(&attr) {
                return Err(format!("duplicate attribute {attr} in <{name}>"));
            }
            names.push(attr);
            let value = attrs[eq + 1..].trim_start();
            let value = value.strip_prefix('"').ok_or(format!("unquoted {attr} in <{name}>"))?;
            let end = value.find('"').ok_or("unterminated attribute")?;
            check_text(&value[..end])?;
            if value[..end].contains('<') {
                return Err("< in an attribute".into());
            }
            attrs = value[end + 1..].trim_start();
        }
        if !self_closing {
            stack.push(name.to_owned());
        }
    }
    check_text(rest)?;
    if !stack.is_empty() {
        return Err(format!("unclosed elements {stack:?}"));
    }
    Ok(elements)
}

#[test]
fn the_checker_rejects_broken_documents() {
    assert!(check_well_formed("<a><b/></a>").is_ok());
    assert!(check_well_formed("<a><b></a>").is_err());
    assert!(check_well_formed("<a x=1/>").is_err());
    assert!(check_well_formed("<a>x & y</a>").is_err());
    assert!(check_well_formed("<a/><b/>").is_err());
    assert!(check_well_formed("<a x=\"1\" x=\"2\"/>").is_err());
}

#[test]
fn the_svg_is_well_formed_and_shows_every_chunk_and_page() {
    let alloc = PooledAllocator::builder().heap_arenas(2).direct_arenas(1).build().unwrap();
    let worker = {
        let alloc = alloc.clone();
        // Binds to the other heap arena: chunks in two heap arenas.
        std::thread::spawn(move || (0..50).map(|i| alloc.heap_buffer(64 << (i % 12))).collect::<Vec<ByteBuf>>())
    };
    let mut held: Vec<ByteBuf> = (0..300).map(|i| alloc.heap_buffer([100, 500, 3000, 40_000][i % 4])).collect();
    held.push(alloc.direct_buffer(3 << 20));
    held.push(alloc.direct_buffer(2 << 20)); // a second direct chunk
    let from_worker = worker.join().unwrap();
    let metric = alloc.metric();
    let svg = arenabuf::chunks_svg(&metric);
    check_well_formed(&svg).unwrap_or_else(|e| panic!("{e}\n{svg}"));

    let arenas = metric.heap_arenas().iter().chain(metric.direct_arenas());
    let chunks: Vec<_> = arenas.flat_map(|a| a.chunk_lists().iter().flat_map(|l| l.chunks())).collect();
    assert!(chunks.len() >= 4, "heap chunks in two arenas and two direct chunks");
    assert_eq!(svg.matches("<g data-chunk=").count(), chunks.len());
    let pages: usize = chunks.iter().map(|c| c.num_pages()).sum();
    assert_eq!(svg.matches("<rect data-page=").count(), pages);
    for state in ["free", "run", "subpage"] {
        let in_metric: u32 = chunks
            .iter()
            .flat_map(|c| c.runs())
            .filter(|r| match r.state() {
                arenabuf::RunState::Free => state == "free",
                arenabuf::RunState::Used => state == "run",
                arenabuf::RunState::Subpage { .. } => state == "subpage",
            })
            .map(|r| r.pages())
            .sum();
        assert!(in_metric > 0, "the workload makes {state} pages");
        assert_eq!(svg.matches(&format!("data-state=\"{state}\"")).count(), in_metric as usize, "{state}");
    }
    assert_eq!(svg.matches("data-kind=\"direct\"").count(), 2);
    drop((held, from_worker));
}

#[test]
fn an_empty_pool_draws_an_empty_picture() {
    let alloc = PooledAllocator::builder().heap_arenas(1).direct_arenas(1).build().unwrap();
    let svg = alloc.stats_svg();
    assert_eq!(check_well_formed(&svg), Ok(1 + 1 + 4 * 2), "svg, title text, legend");
    assert_eq!(svg.matches("<rect data-page=").count(), 0);
}

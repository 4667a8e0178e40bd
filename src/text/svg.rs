//! Small SVG pictures made on the server, so pages need no JavaScript and keep their
//! strict content policy: the response-time sparkline of the status page, and the
//! status and uptime badges READMEs and intranets embed. Written by hand: each is a few
//! shapes, and the badge crates on crates.io are unmaintained or pull in font rendering.

use super::html::escape;

/// A line through `points` (None: no data that hour, the line breaks), `width` by
/// `height` pixels, with `label` as its accessible name.
pub fn sparkline(points: &[Option<f64>], width: u32, height: u32, label: &str) -> String {
    let max = points.iter().flatten().copied().fold(0.0f64, f64::max);
    let n = points.len().max(2) - 1;
    let (w, h) = (f64::from(width), f64::from(height));
    let mut paths = Vec::new();
    let mut current = String::new();
    // A lone hour between gaps is drawn as a dot.
    let finish = |d: String| {
        if d.contains(" L") {
            d
        } else {
            format!("{d} l0.1,0")
        }
    };
    for (i, p) in points.iter().enumerate() {
        match p {
            Some(v) => {
                let x = w * i as f64 / n as f64;
                // A flat line sits mid-height; otherwise the slowest hour touches the top.
                let y = if max > 0.0 {
                    h - 1.0 - (h - 2.0) * v / max
                } else {
                    h / 2.0
                };
                current.push_str(&format!(
                    "{}{x:.1},{y:.1}",
                    if current.is_empty() { "M" } else { " L" }
                ));
            }
            None if !current.is_empty() => paths.push(finish(std::mem::take(&mut current))),
            None => {}
        }
    }
    if !current.is_empty() {
        paths.push(finish(current));
    }
    let lines: String = paths.iter().map(|d| format!("<path d=\"{d}\"/>")).collect();
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"spark\" width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\" role=\"img\" aria-label=\"{l}\"><title>{l}</title><g fill=\"none\" stroke=\"currentColor\" stroke-width=\"1.5\" stroke-linejoin=\"round\" stroke-linecap=\"round\">{lines}</g></svg>",
        l = escape(label)
    )
}

/// A two-part badge: `label` on grey, `value` on `color` (a CSS colour).
pub fn badge(label: &str, value: &str, color: &str) -> String {
    // Verdana 11px is about 6.5 px a character on average; the badge is sized from it.
    let width = |s: &str| (s.chars().count() as f64 * 6.5 + 12.0).round() as u32;
    let (lw, vw) = (width(label), width(value));
    let total = lw + vw;
    let (l, v) = (escape(label), escape(value));
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{total}\" height=\"20\" role=\"img\" aria-label=\"{l}: {v}\">\
<title>{l}: {v}</title>\
<rect width=\"{lw}\" height=\"20\" fill=\"#555\"/><rect x=\"{lw}\" width=\"{vw}\" height=\"20\" fill=\"{c}\"/>\
<g fill=\"#fff\" text-anchor=\"middle\" font-family=\"Verdana,DejaVu Sans,sans-serif\" font-size=\"11\">\
<text x=\"{lx}\" y=\"14\">{l}</text><text x=\"{vx}\" y=\"14\">{v}</text></g></svg>",
        c = escape(color),
        lx = lw / 2,
        vx = lw + vw / 2,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sparkline_breaks_where_there_is_no_data_and_peaks_at_the_top() {
        let svg = sparkline(
            &[Some(100.0), Some(200.0), None, Some(50.0)],
            30,
            20,
            "Response time",
        );
        assert_eq!(svg.matches("<path").count(), 2, "{svg}");
        assert!(svg.contains("M0.0,10.0 L10.0,1.0"), "{svg}");
        assert!(
            svg.contains("M30.0,14.5 l0.1,0"),
            "a lone hour is a dot: {svg}"
        );
        assert!(svg.contains("aria-label=\"Response time\""));
        let flat = sparkline(&[Some(0.0), Some(0.0)], 10, 10, "x");
        assert!(flat.contains("M0.0,5.0 L10.0,5.0"), "{flat}");
        assert!(!sparkline(&[None, None], 10, 10, "x").contains("<path"));
    }

    #[test]
    fn badge_text_is_escaped() {
        let svg = badge("<shop>", "99.95%", "#4c1");
        assert!(
            svg.contains("&lt;shop&gt;") && !svg.contains("<shop>"),
            "{svg}"
        );
        assert!(svg.contains("aria-label=\"&lt;shop&gt;: 99.95%\""));
    }
}

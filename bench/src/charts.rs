//! Plots for the report (SVG, with plotters): bars per variant, lines over a parameter, and
//! latency distributions.
use std::path::Path;

use anyhow::{anyhow, Result};
use plotters::prelude::*;

use crate::report::Section;

const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

/// Registers the font plotters draws text with; false when it is missing (no plots then).
pub fn init() -> bool {
    match std::fs::read(FONT) {
        Ok(bytes) => {
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok()
        }
        Err(_) => false,
    }
}

fn err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("plot: {e:?}")
}

/// One colour per variant, the same in every chart: known variants by name (the part before
/// any `, `), others from a fixed palette by a hash of the name.
pub fn color_of(variant: &str) -> RGBAColor {
    let v = variant.to_ascii_lowercase();
    let key = v.split(", ").next().unwrap_or(&v);
    const KNOWN: &[(&str, RGBColor)] = &[
        ("netpath xdp", RGBColor(0x1b, 0x9e, 0x77)),
        ("netpath tc", RGBColor(0x66, 0xa6, 0x1e)),
        ("netpath", RGBColor(0x1b, 0x9e, 0x77)),
        ("iptables", RGBColor(0xd9, 0x5f, 0x02)),
        ("nftables", RGBColor(0xe6, 0xab, 0x02)),
        ("docker-proxy", RGBColor(0xe7, 0x29, 0x8a)),
        ("docker", RGBColor(0x75, 0x70, 0xb3)),
        ("routing", RGBColor(0x66, 0x66, 0x66)),
        ("plain routing", RGBColor(0x66, 0x66, 0x66)),
        ("ceiling", RGBColor(0x33, 0x33, 0x33)),
        ("aardvark-dns", RGBColor(0xa6, 0x76, 0x1d)),
        ("dnsmasq", RGBColor(0x7f, 0x3c, 0x8d)),
    ];
    // The longest known name the variant starts with.
    let known = KNOWN
        .iter()
        .filter(|(k, _)| key.starts_with(k) || key.contains(&format!("({k}")))
        .max_by_key(|(k, _)| k.len());
    match known {
        Some((_, c)) => c.to_rgba(),
        None => {
            let h = key.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
            });
            Palette99::pick((h % 99) as usize).to_rgba()
        }
    }
}

/// A horizontal bar per figure of `s` (its median) with the min–max spread as a line, its
/// value and ratio to the baseline written beside it; the baseline's bar is outlined and
/// named so.
pub fn bars(dir: &Path, file: &str, s: &Section) -> Result<String> {
    let path = dir.join(file);
    let n = s.figures.len();
    let unit = s
        .figures
        .first()
        .map(|f| f.unit.clone())
        .unwrap_or_default();
    let base = s
        .figures
        .iter()
        .find(|f| f.variant == s.baseline)
        .map(|f| f.median());
    let max = s
        .figures
        .iter()
        .map(|f| f.max())
        .fold(0.0, f64::max)
        .max(1e-9)
        * 1.35;
    let root = SVGBackend::new(&path, (900, 110 + 40 * n as u32)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("{} ({unit}, median and spread)", s.scenario),
            ("sans-serif", 20),
        )
        .margin(15)
        .x_label_area_size(35)
        .y_label_area_size(260)
        .build_cartesian_2d(0.0..max, 0.0..n as f64)
        .map_err(err)?;
    let names: Vec<String> = s
        .figures
        .iter()
        .map(|f| {
            if f.variant == s.baseline {
                format!("{} (baseline)", f.variant)
            } else {
                f.variant.clone()
            }
        })
        .collect();
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(2 * n + 1)
        .y_label_formatter(&|v| {
            // Labels sit at the middle of each bar's slot.
            let i = (v - 0.5).round();
            if (v - 0.5 - i).abs() < 1e-6 && i >= 0.0 {
                names.get(i as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .x_label_formatter(&|v| crate::report::num(*v))
        .x_desc(unit.as_str())
        .draw()
        .map_err(err)?;
    for (i, f) in s.figures.iter().enumerate() {
        let (lo, hi) = (i as f64 + 0.15, i as f64 + 0.85);
        let color = color_of(&f.variant);
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(0.0, lo), (f.median(), hi)],
                color.mix(0.75).filled(),
            )))
            .map_err(err)?;
        if f.variant == s.baseline {
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(0.0, lo), (f.median(), hi)],
                    BLACK.stroke_width(2),
                )))
                .map_err(err)?;
        }
        let mid = i as f64 + 0.5;
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![(f.min(), mid), (f.max(), mid)],
                BLACK.stroke_width(2),
            )))
            .map_err(err)?;
        let mut label = format!("{} {}", crate::report::num(f.median()), f.unit);
        if let Some(b) = base.filter(|b| *b != 0.0 && f.variant != s.baseline) {
            label += &format!("  ({:.2}×)", f.median() / b);
        }
        chart
            .draw_series(std::iter::once(Text::new(
                label,
                (f.max().max(f.median()) + max * 0.01, mid + 0.12),
                ("sans-serif", 13).into_font(),
            )))
            .map_err(err)?;
    }
    root.present().map_err(err)?;
    Ok(file.to_string())
}

/// Lines of (x, y) points, x on a log scale.
pub fn lines(
    dir: &Path,
    file: &str,
    title: &str,
    x_desc: &str,
    y_desc: &str,
    series: &[(String, Vec<(f64, f64)>)],
) -> Result<String> {
    let xmax = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|q| q.0))
        .fold(1.0, f64::max)
        * 1.5;
    let ymax = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|q| q.1))
        .fold(0.0, f64::max)
        .max(1e-9)
        * 1.15;
    let frame = LogX {
        title,
        x: (x_desc, 1.0..xmax),
        y: (y_desc, 0.0..ymax),
        points: true,
        legend: SeriesLabelPosition::MiddleRight,
    };
    frame.draw(&dir.join(file), series)?;
    Ok(file.to_string())
}

/// Cumulative distributions of latencies (µs), one line per variant, x on a log scale.
pub fn cdf(dir: &Path, file: &str, title: &str, dists: &[(String, Vec<f64>)]) -> Result<String> {
    let xmin = dists
        .iter()
        .filter_map(|(_, v)| v.first())
        .fold(f64::INFINITY, |a, b| a.min(*b))
        .max(0.1)
        * 0.8;
    let xmax = dists
        .iter()
        .filter_map(|(_, v)| v.last())
        .fold(1.0_f64, |a, b| a.max(*b))
        * 1.2;
    let series: Vec<(String, Vec<(f64, f64)>)> = dists
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(name, v)| {
            // At most ~400 points per line.
            let step = (v.len() / 400).max(1);
            let pts = v
                .iter()
                .enumerate()
                .step_by(step)
                .map(|(k, x)| (*x, 100.0 * k as f64 / (v.len() - 1).max(1) as f64))
                .collect();
            (name.clone(), pts)
        })
        .collect();
    let frame = LogX {
        title,
        x: ("latency (µs)", xmin..xmax),
        y: ("percentile", 0.0..100.0),
        points: false,
        legend: SeriesLabelPosition::LowerRight,
    };
    frame.draw(&dir.join(file), &series)?;
    Ok(file.to_string())
}

/// A chart of lines with x on a log scale: what `lines` and `cdf` share.
struct LogX<'a> {
    title: &'a str,
    x: (&'a str, std::ops::Range<f64>),
    y: (&'a str, std::ops::Range<f64>),
    /// A dot on each point too.
    points: bool,
    legend: SeriesLabelPosition,
}

impl LogX<'_> {
    fn draw(self, path: &Path, series: &[(String, Vec<(f64, f64)>)]) -> Result<()> {
        let root = SVGBackend::new(path, (900, 500)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(self.title, ("sans-serif", 20))
            .margin(15)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(self.x.1.log_scale(), self.y.1)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc(self.x.0)
            .y_desc(self.y.0)
            .draw()
            .map_err(err)?;
        for (name, pts) in series {
            let color = color_of(name);
            chart
                .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
                .map_err(err)?
                .label(name.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                });
            if self.points {
                chart
                    .draw_series(pts.iter().map(|p| Circle::new(*p, 3, color.filled())))
                    .map_err(err)?;
            }
        }
        chart
            .configure_series_labels()
            .position(self.legend)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(err)?;
        root.present().map_err(err)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Figure;

    #[test]
    fn a_variant_has_one_colour_everywhere() {
        assert_eq!(color_of("netpath xdp"), color_of("netpath xdp, 1000 ports"));
        assert_eq!(color_of("iptables"), color_of("iptables, 65535 ports"));
        assert_ne!(color_of("netpath xdp"), color_of("iptables"));
        assert_eq!(color_of("something new"), color_of("something new"));
    }

    #[test]
    fn bars_draw() {
        assert!(
            init(),
            "{FONT} (Debian package fonts-dejavu-core, installed by setup)"
        );
        let mut a = Figure::new("iptables", "Mpps", false);
        a.runs = vec![0.7, 0.8, 0.75];
        let mut b = Figure::new("netpath xdp", "Mpps", false);
        b.runs = vec![1.2, 1.3, 1.25];
        let s = Section {
            scenario: "pps".into(),
            about: String::new(),
            figures: vec![a, b],
            baseline: "iptables".into(),
            targets: Vec::new(),
            plots: Vec::new(),
        };
        let dir = netpath_user::scratch::ScratchDir::new("bars");
        let f = bars(&dir, "netpath-bars-test.svg", &s).unwrap();
        let svg = std::fs::read_to_string(dir.join(&f)).unwrap();
        assert!(
            svg.contains("iptables (baseline)") && svg.contains("1.67×"),
            "{svg}"
        );
    }
}

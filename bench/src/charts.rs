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

/// A horizontal bar per figure of `s` (its median), with the min–max spread as a line.
pub fn bars(dir: &Path, file: &str, s: &Section) -> Result<String> {
    let path = dir.join(file);
    let n = s.figures.len();
    let unit = s
        .figures
        .first()
        .map(|f| f.unit.clone())
        .unwrap_or_default();
    let max = s
        .figures
        .iter()
        .map(|f| f.max())
        .fold(0.0, f64::max)
        .max(1e-9)
        * 1.1;
    let root = SVGBackend::new(&path, (900, 120 + 40 * n as u32)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("{} ({unit}, median and spread)", s.scenario),
            ("sans-serif", 20),
        )
        .margin(15)
        .x_label_area_size(35)
        .y_label_area_size(230)
        .build_cartesian_2d(0.0..max, (0..n).into_segmented())
        .map_err(err)?;
    let names: Vec<String> = s.figures.iter().map(|f| f.variant.clone()).collect();
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(n)
        .y_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) => names.get(*i).cloned().unwrap_or_default(),
            _ => String::new(),
        })
        .x_desc(unit.as_str())
        .draw()
        .map_err(err)?;
    for (i, f) in s.figures.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [
                    (0.0, SegmentValue::Exact(i)),
                    (f.median(), SegmentValue::Exact(i + 1)),
                ],
                color.mix(0.7).filled(),
            )))
            .map_err(err)?;
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![
                    (f.min(), SegmentValue::CenterOf(i)),
                    (f.max(), SegmentValue::CenterOf(i)),
                ],
                BLACK.stroke_width(2),
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
    let path = dir.join(file);
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
    let root = SVGBackend::new(&path, (900, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d((1.0..xmax).log_scale(), 0.0..ymax)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .draw()
        .map_err(err)?;
    for (i, (name, pts)) in series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
            .map_err(err)?
            .label(name.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        chart
            .draw_series(pts.iter().map(|p| Circle::new(*p, 3, color.filled())))
            .map_err(err)?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(file.to_string())
}

/// Cumulative distributions of latencies (µs), one line per variant, x on a log scale.
pub fn cdf(dir: &Path, file: &str, title: &str, dists: &[(String, Vec<f64>)]) -> Result<String> {
    let path = dir.join(file);
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
    let root = SVGBackend::new(&path, (900, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d((xmin..xmax).log_scale(), 0.0..100.0)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("latency (µs)")
        .y_desc("percentile")
        .draw()
        .map_err(err)?;
    for (i, (name, v)) in dists.iter().enumerate() {
        if v.is_empty() {
            continue;
        }
        let color = Palette99::pick(i).to_rgba();
        // At most ~400 points per line.
        let step = (v.len() / 400).max(1);
        let pts: Vec<(f64, f64)> = v
            .iter()
            .enumerate()
            .step_by(step)
            .map(|(k, x)| (*x, 100.0 * k as f64 / (v.len() - 1).max(1) as f64))
            .collect();
        chart
            .draw_series(LineSeries::new(pts, color.stroke_width(2)))
            .map_err(err)?
            .label(name.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(file.to_string())
}

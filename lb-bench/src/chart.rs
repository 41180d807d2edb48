//! SVG bar charts of the report (plotters, SVG backend: text is left to the viewer's fonts,
//! nothing is rasterised, so no system fonts are needed to build or run).
use std::path::Path;

use anyhow::{Result, anyhow};
use plotters::prelude::*;

use crate::report::{Chart, Report, TargetRow};

const BAR: RGBColor = RGBColor(0x4c, 0x72, 0xb0);
const MISS: RGBColor = RGBColor(0xc4, 0x4e, 0x52);
const OK: RGBColor = RGBColor(0x55, 0xa8, 0x68);

/// Writes one SVG per chart, plus `targets.svg`, into `dir`; returns the paths written.
pub fn write_all(report: &Report, dir: &Path) -> Result<Vec<String>> {
    std::fs::create_dir_all(dir)?;
    let mut written = Vec::new();
    for c in &report.charts {
        let path = dir.join(&c.file);
        bars(c, &path)?;
        written.push(path.display().to_string());
    }
    if !report.targets.is_empty() {
        let path = dir.join("targets.svg");
        targets(&report.targets, &path)?;
        written.push(path.display().to_string());
    }
    Ok(written)
}

fn err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("drawing the chart: {e:?}")
}

/// Horizontal bars: one row per label, the median as the bar, min-max as a whisker.
fn bars(c: &Chart, path: &Path) -> Result<()> {
    let n = c.bars.len();
    let height = 90 + 44 * n as u32;
    let root = SVGBackend::new(path, (900, height)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let max = c
        .bars
        .iter()
        .map(|(_, s)| s.max)
        .filter(|v| v.is_finite())
        .fold(0.0f64, f64::max)
        .max(1e-9)
        * 1.1;
    let mut chart = ChartBuilder::on(&root)
        .caption(&c.title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(360)
        .build_cartesian_2d(0.0..max, (0..n).into_segmented())
        .map_err(err)?;
    let labels: Vec<String> = c.bars.iter().map(|(l, _)| l.clone()).collect();
    chart
        .configure_mesh()
        .disable_y_mesh()
        .x_desc(c.unit.as_str())
        .y_labels(n)
        .y_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) => labels.get(*i).cloned().unwrap_or_default(),
            _ => String::new(),
        })
        .draw()
        .map_err(err)?;
    for (i, (_, s)) in c.bars.iter().enumerate() {
        let (lo, hi) = (SegmentValue::Exact(i), SegmentValue::Exact(i + 1));
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(0.0, lo), (s.median, hi)],
                BAR.mix(0.85).filled(),
            )))
            .map_err(err)?;
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![
                    (s.min, SegmentValue::CenterOf(i)),
                    (s.max, SegmentValue::CenterOf(i)),
                ],
                BLACK.stroke_width(2),
            )))
            .map_err(err)?;
        chart
            .draw_series(std::iter::once(Text::new(
                format!("{:.3}", s.median),
                (s.max, SegmentValue::CenterOf(i)),
                ("sans-serif", 14),
            )))
            .map_err(err)?;
    }
    root.present().map_err(err)?;
    Ok(())
}

/// Every target: the measured ratio as a bar (green met, red missed) and the goal as a line.
fn targets(rows: &[TargetRow], path: &Path) -> Result<()> {
    let n = rows.len();
    let height = 90 + 40 * n as u32;
    let root = SVGBackend::new(path, (1000, height)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let max = rows
        .iter()
        .flat_map(|r| {
            let goal = match r.target {
                crate::report::Target::AtLeast(t) | crate::report::Target::AtMost(t) => t,
            };
            [r.ratio, goal]
        })
        .filter(|v| v.is_finite())
        .fold(0.0f64, f64::max)
        .max(1e-9)
        * 1.1;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Targets: measured ratio (bar) and goal (line)",
            ("sans-serif", 20),
        )
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(470)
        .build_cartesian_2d(0.0..max, (0..n).into_segmented())
        .map_err(err)?;
    let labels: Vec<String> = rows.iter().map(|r| r.what.clone()).collect();
    chart
        .configure_mesh()
        .disable_y_mesh()
        .x_desc("ratio (x)")
        .y_labels(n)
        .y_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) => labels.get(*i).cloned().unwrap_or_default(),
            _ => String::new(),
        })
        .draw()
        .map_err(err)?;
    for (i, r) in rows.iter().enumerate() {
        let (lo, hi) = (SegmentValue::Exact(i), SegmentValue::Exact(i + 1));
        let color = if r.target.met(r.ratio) { OK } else { MISS };
        let v = if r.ratio.is_finite() { r.ratio } else { 0.0 };
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(0.0, lo.clone()), (v, hi.clone())],
                color.mix(0.85).filled(),
            )))
            .map_err(err)?;
        let goal = match r.target {
            crate::report::Target::AtLeast(t) | crate::report::Target::AtMost(t) => t,
        };
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![(goal, lo), (goal, hi)],
                BLACK.stroke_width(3),
            )))
            .map_err(err)?;
        chart
            .draw_series(std::iter::once(Text::new(
                format!("{:.2}x ({})", r.ratio, r.target.text()),
                (v.max(goal), SegmentValue::CenterOf(i)),
                ("sans-serif", 14),
            )))
            .map_err(err)?;
    }
    root.present().map_err(err)?;
    Ok(())
}

//! A run's learning curves as one SVG figure (`trm runs plot`): four panels against the
//! optimizer step — training loss, training accuracy, evaluation accuracy, learning rate.
//!
//! SVG only: plotters' SVG backend writes text as `<text>` and needs no font, whereas a PNG
//! would need a font file and a rasteriser compiled in.

use plotters::prelude::*;

use super::metrics_log::MetricsRecord;

/// Why no figure was drawn.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    /// The log holds no line to draw.
    #[error("no metrics to plot yet (the log is empty)")]
    Empty,
    /// plotters failed (it reports its backend's errors as text).
    #[error("drawing the figure: {0}")]
    Draw(String),
}

fn draw_err(e: impl std::fmt::Display) -> PlotError {
    PlotError::Draw(e.to_string())
}

/// The Okabe-Ito colour-blind-safe palette (as the web app).
const BLUE: RGBColor = RGBColor(0, 114, 178);
const ORANGE: RGBColor = RGBColor(230, 159, 0);
const GREEN: RGBColor = RGBColor(0, 158, 115);
const VERMILLION: RGBColor = RGBColor(213, 94, 0);

/// One curve: its legend label, colour and `(step, value)` points.
struct Series {
    label: &'static str,
    color: RGBColor,
    points: Vec<(f64, f64)>,
}

/// One panel of the figure.
struct Panel {
    title: &'static str,
    /// Fixed y range (accuracies), else the data's.
    y_range: Option<(f64, f64)>,
    series: Vec<Series>,
}

/// The finite values of `value` on the lines of `kind`, by step.
fn points(records: &[MetricsRecord], kind: &str, value: impl Fn(&MetricsRecord) -> Option<f64>) -> Vec<(f64, f64)> {
    records
        .iter()
        .filter(|r| r.kind == kind)
        .filter_map(|r| value(r).filter(|v| v.is_finite()).map(|v| (r.step as f64, v)))
        .collect()
}

fn panels(records: &[MetricsRecord]) -> Vec<Panel> {
    let series = |label, color, kind, value: fn(&MetricsRecord) -> Option<f64>| Series { label, color, points: points(records, kind, value) };
    vec![
        Panel {
            title: "training loss",
            y_range: None,
            series: vec![
                series("token loss (lm_loss)", BLUE, "train", |r| r.lm_loss),
                series("halting loss (q_halt_loss)", ORANGE, "train", |r| r.q_halt_loss),
            ],
        },
        Panel {
            title: "training accuracy",
            y_range: Some((0.0, 1.0)),
            series: vec![
                series("train exact", BLUE, "train", |r| r.exact_accuracy),
                series("train token", ORANGE, "train", |r| r.accuracy),
            ],
        },
        Panel {
            title: "evaluation accuracy",
            y_range: Some((0.0, 1.0)),
            series: vec![
                series("eval exact", GREEN, "eval", |r| r.exact_accuracy),
                series("eval token", VERMILLION, "eval", |r| r.accuracy),
            ],
        },
        Panel { title: "learning rate", y_range: None, series: vec![series("lr", BLUE, "train", |r| r.lr)] },
    ]
}

/// `lo..hi` around the values, never empty.
fn data_range(series: &[Series]) -> (f64, f64) {
    let values = series.iter().flat_map(|s| s.points.iter().map(|p| p.1));
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let pad = if hi > lo { (hi - lo) * 0.05 } else { lo.abs().max(1e-12) * 0.1 };
    (lo - pad, hi + pad)
}

/// Draws the figure for `records` with `title` above it; returns the SVG text.
pub fn render_svg(records: &[MetricsRecord], title: &str) -> Result<String, PlotError> {
    let last_step = records.iter().map(|r| r.step).max().ok_or(PlotError::Empty)?;
    let x_range = 0.0..(last_step.max(1) as f64);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (1100, 760)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_err)?;
        let root = root.titled(title, ("sans-serif", 20)).map_err(draw_err)?;
        for (area, panel) in root.split_evenly((2, 2)).iter().zip(panels(records)) {
            let (y0, y1) = panel.y_range.unwrap_or_else(|| data_range(&panel.series));
            let mut chart = ChartBuilder::on(area)
                .caption(panel.title, ("sans-serif", 16))
                .margin(12)
                .margin_right(28)
                .x_label_area_size(32)
                .y_label_area_size(64)
                .build_cartesian_2d(x_range.clone(), y0..y1)
                .map_err(draw_err)?;
            let small = panel.title == "learning rate";
            chart
                .configure_mesh()
                .x_desc("step")
                .light_line_style(WHITE)
                .x_label_formatter(&|x| format!("{x:.0}"))
                .y_label_formatter(&|y| if small { format!("{y:.2e}") } else { format!("{y:.3}") })
                .draw()
                .map_err(draw_err)?;
            if panel.series.iter().all(|s| s.points.is_empty()) {
                let (x, y) = (x_range.end / 3.0, (y0 + y1) / 2.0);
                chart.draw_series(std::iter::once(Text::new("no data yet", (x, y), ("sans-serif", 14)))).map_err(draw_err)?;
                continue;
            }
            for s in panel.series.into_iter().filter(|s| !s.points.is_empty()) {
                let color = s.color;
                // Sparse series (evaluations, short runs) get markers, so one point still shows.
                if s.points.len() <= 50 {
                    chart.draw_series(s.points.iter().map(|&p| Circle::new(p, 3, color.filled()))).map_err(draw_err)?;
                }
                chart
                    .draw_series(LineSeries::new(s.points, color.stroke_width(2)))
                    .map_err(draw_err)?
                    .label(s.label)
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
            }
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperRight)
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK.mix(0.4))
                .draw()
                .map_err(draw_err)?;
        }
        root.present().map_err(draw_err)?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(kind: &str, step: u64, loss: Option<f64>, exact: Option<f64>) -> MetricsRecord {
        MetricsRecord {
            kind: kind.into(),
            step,
            lr: Some(1e-3),
            accuracy: exact.map(|e| (e + 1.0) / 2.0),
            exact_accuracy: exact,
            lm_loss: loss,
            q_halt_loss: loss.map(|l| l / 10.0),
            examples_per_s: None,
            elapsed_s: None,
        }
    }

    #[test]
    fn draws_every_panel_and_series() {
        let records = vec![
            rec("train", 50, Some(1.5), Some(0.0)),
            rec("train", 100, Some(1.2), None),
            rec("eval", 100, Some(1.1), Some(0.25)),
            rec("train", 150, Some(0.9), Some(0.5)),
        ];
        let svg = render_svg(&records, "run x").unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..80.min(svg.len())]);
        for text in ["run x", "training loss", "training accuracy", "evaluation accuracy", "learning rate", "lm_loss", "eval exact", "eval token", "lr"] {
            assert!(svg.contains(text), "{text} missing");
        }
        // Five curves with two or more points (lr, both losses, train token; train exact has
        // 2 finite points too) and the single eval point as markers.
        assert!(svg.matches("<polyline").count() >= 5, "{} polylines", svg.matches("<polyline").count());
        assert!(svg.contains("<circle"));
        assert!(!svg.contains("no data yet"));
    }

    #[test]
    fn an_empty_log_is_an_error_and_a_panel_without_data_says_so() {
        assert!(matches!(render_svg(&[], "t"), Err(PlotError::Empty)));
        let svg = render_svg(&[rec("train", 50, Some(1.0), Some(0.0))], "t").unwrap();
        assert!(svg.contains("no data yet"), "the evaluation panel before any evaluation");
    }
}

//! SVG charts written beside the reports (plotters, SVG backend only). One function per chart,
//! each taking plain data; the scenarios call them at the end of their run. Every chart shows its
//! figures against the limit they are judged by, measured or stated in the same run.

use plotters::prelude::*;
use serde_json::Value;
use std::path::{Path, PathBuf};

const SIZE: (u32, u32) = (960, 540);
const FONT: &str = "sans-serif";
const SERIES: [RGBColor; 4] =
    [RGBColor(31, 119, 180), RGBColor(255, 127, 14), RGBColor(44, 160, 44), RGBColor(148, 103, 189)];
const LIMIT: RGBColor = RGBColor(214, 39, 40);

/// The series labels, in one style for every chart.
fn legend<'a, DB: DrawingBackend + 'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
    position: SeriesLabelPosition,
) -> Result<(), String> {
    chart
        .configure_series_labels()
        .position(position)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font((FONT, 14))
        .draw()
        .map_err(err)
}

fn err(e: impl std::fmt::Display) -> String {
    format!("chart: {e}")
}

/// One pass's latency distribution: `percentiles_ms[p]` is the p-th percentile (0..=100).
pub struct LatencyCurve<'a> {
    pub label: &'a str,
    pub percentiles_ms: &'a [f64],
}

/// Orders: latency (webhook → sales order written) by percentile, one curve per pass, with
/// the targets as marks (`(label, percentile, limit_ms)`, e.g. p99 ≤ 10 s).
pub fn latency_distribution(
    path: &Path,
    title: &str,
    curves: &[LatencyCurve],
    targets: &[(&str, f64, f64)],
) -> Result<(), String> {
    let highest = curves
        .iter()
        .flat_map(|c| c.percentiles_ms.iter().copied())
        .chain(targets.iter().map(|t| t.2))
        .fold(0.0_f64, f64::max);
    let y_max = (highest / 1000.0 * 1.1).max(0.5);
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, (FONT, 22))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d(0.0_f64..100.0, 0.0_f64..y_max)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("percentile of orders")
        .y_desc("latency, s")
        .label_style((FONT, 14))
        .draw()
        .map_err(err)?;
    for (i, curve) in curves.iter().enumerate() {
        let color = SERIES[i % SERIES.len()];
        let points = curve.percentiles_ms.iter().enumerate().map(|(p, ms)| (p as f64, ms / 1000.0));
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))
            .map_err(err)?
            .label(curve.label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
    }
    for (label, p, limit_ms) in targets {
        let text = format!("{label} ≤ {:.1} s", limit_ms / 1000.0);
        chart
            .draw_series(std::iter::once(Cross::new((*p, limit_ms / 1000.0), 7, LIMIT.stroke_width(2))))
            .map_err(err)?;
        chart
            .draw_series(std::iter::once(Text::new(
                text,
                (*p - 14.0, limit_ms / 1000.0 + y_max * 0.03),
                (FONT, 14).into_font().color(&LIMIT),
            )))
            .map_err(err)?;
    }
    legend(&mut chart, SeriesLabelPosition::UpperLeft)?;
    root.present().map_err(err)
}

/// One function start measured by the cold-start bench (median init).
pub struct InitBar<'a> {
    pub function: &'a str,
    pub backend: &'a str,
    pub init_ms: f64,
}

/// Cold start: each function's init on each backend, against the hello-world baseline of the
/// same run and the 1.5× limit.
pub fn init_against_baseline(path: &Path, bars: &[InitBar], baseline_ms: f64) -> Result<(), String> {
    let limit = baseline_ms * 1.5;
    let highest = bars.iter().map(|b| b.init_ms).fold(limit, f64::max);
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let n = bars.len().max(1);
    let labels: Vec<String> = bars.iter().map(|b| format!("{} ({})", b.function, b.backend)).collect();
    let mut chart = ChartBuilder::on(&root)
        .caption("Lambda init against a hello-world lambda_runtime function", (FONT, 22))
        .margin(16)
        .x_label_area_size(150)
        .y_label_area_size(64)
        .build_cartesian_2d(0.0_f64..n as f64, 0.0_f64..highest * 1.15)
        .map_err(err)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(n * 2 + 1)
        .x_label_formatter(&|x| {
            let i = x.floor() as usize;
            // Label each bar at its centre only.
            if (x - i as f64 - 0.5).abs() < 1e-6 {
                labels.get(i).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .x_label_style((FONT, 12).into_font().transform(FontTransform::Rotate90))
        .y_desc("init, ms (median)")
        .label_style((FONT, 14))
        .draw()
        .map_err(err)?;
    chart
        .draw_series(bars.iter().enumerate().map(|(i, b)| {
            let color = if b.backend == "dynamodb" { SERIES[1] } else { SERIES[0] };
            Rectangle::new([(i as f64 + 0.15, 0.0), (i as f64 + 0.85, b.init_ms)], color.filled())
        }))
        .map_err(err)?;
    for (value, label, style) in [
        (baseline_ms, format!("hello-world baseline {baseline_ms:.2} ms"), BLACK.stroke_width(2)),
        (limit, format!("limit 1.5× baseline = {limit:.2} ms"), LIMIT.stroke_width(2)),
    ] {
        chart
            .draw_series(LineSeries::new([(0.0, value), (n as f64, value)], style))
            .map_err(err)?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], style));
    }
    legend(&mut chart, SeriesLabelPosition::UpperRight)?;
    root.present().map_err(err)
}

/// One inventory run at one catalogue size.
#[derive(Debug, Clone, PartialEq)]
pub struct InventoryPoint {
    pub skus: f64,
    pub brightpearl_requests: f64,
    pub brightpearl_requests_min: f64,
    pub cpu_ms: f64,
}

/// Inventory: Brightpearl requests (against the minimum, ceil(N/200)) and CPU (against the 2 s
/// target) by catalogue size, log-log, one point per size.
pub fn inventory_scaling(path: &Path, points: &[InventoryPoint], cpu_limit_ms: f64) -> Result<(), String> {
    let mut points = points.to_vec();
    points.sort_by(|a, b| a.skus.total_cmp(&b.skus));
    let x_min = points.first().map_or(100.0, |p| p.skus) / 2.0;
    let x_max = points.last().map_or(1000.0, |p| p.skus) * 2.0;
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let root = root.titled("Inventory sweep by catalogue size", (FONT, 22)).map_err(err)?;
    let (left, right) = root.split_horizontally(SIZE.0 / 2);
    let requests_max =
        points.iter().map(|p| p.brightpearl_requests.max(p.brightpearl_requests_min)).fold(10.0, f64::max);
    let mut requests = ChartBuilder::on(&left)
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d((x_min..x_max).log_scale(), (0.5_f64..requests_max * 2.0).log_scale())
        .map_err(err)?;
    requests
        .configure_mesh()
        .x_desc("SKUs")
        .y_desc("Brightpearl requests per sweep")
        .label_style((FONT, 13))
        .draw()
        .map_err(err)?;
    let measured: Vec<(f64, f64)> = points.iter().map(|p| (p.skus, p.brightpearl_requests)).collect();
    let minimum: Vec<(f64, f64)> = points.iter().map(|p| (p.skus, p.brightpearl_requests_min)).collect();
    requests
        .draw_series(LineSeries::new(measured.clone(), SERIES[0].stroke_width(2)))
        .map_err(err)?
        .label("measured")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], SERIES[0].stroke_width(2)));
    requests.draw_series(measured.iter().map(|p| Circle::new(*p, 4, SERIES[0].filled()))).map_err(err)?;
    requests
        .draw_series(LineSeries::new(minimum, LIMIT.stroke_width(1)))
        .map_err(err)?
        .label("minimum, ceil(N/200)")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], LIMIT.stroke_width(1)));
    legend(&mut requests, SeriesLabelPosition::UpperLeft)?;
    let cpu_max = points.iter().map(|p| p.cpu_ms).fold(cpu_limit_ms, f64::max);
    let mut cpu = ChartBuilder::on(&right)
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d((x_min..x_max).log_scale(), (1.0_f64..cpu_max * 2.0).log_scale())
        .map_err(err)?;
    cpu.configure_mesh()
        .x_desc("SKUs")
        .y_desc("CPU ms per sweep")
        .label_style((FONT, 13))
        .draw()
        .map_err(err)?;
    let cpu_points: Vec<(f64, f64)> = points.iter().map(|p| (p.skus, p.cpu_ms)).collect();
    cpu.draw_series(LineSeries::new(cpu_points.clone(), SERIES[2].stroke_width(2)))
        .map_err(err)?
        .label("measured")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], SERIES[2].stroke_width(2)));
    cpu.draw_series(cpu_points.iter().map(|p| Circle::new(*p, 4, SERIES[2].filled()))).map_err(err)?;
    cpu.draw_series(LineSeries::new([(x_min, cpu_limit_ms), (x_max, cpu_limit_ms)], LIMIT.stroke_width(1)))
        .map_err(err)?
        .label(format!("target {:.0} s", cpu_limit_ms / 1000.0))
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], LIMIT.stroke_width(1)));
    legend(&mut cpu, SeriesLabelPosition::UpperLeft)?;
    root.present().map_err(err)
}

/// The inventory points of every `inventory-*.json` report in `dir` (one per catalogue size run).
pub fn inventory_points(dir: &Path) -> Vec<InventoryPoint> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut points = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        // The sweep is the run whose cost follows catalogue size; the poll follows change.
        if !(name.starts_with("inventory-sweep-") && name.ends_with(".json")) {
            continue;
        }
        let Some(report) =
            std::fs::read(entry.path()).ok().and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        else {
            continue;
        };
        let number = |v: Option<&Value>| v.and_then(Value::as_f64);
        let (Some(skus), Some(requests), Some(minimum), Some(cpu_ms)) = (
            number(report.pointer("/params/skus")),
            number(report.get("brightpearl_requests")),
            number(report.get("brightpearl_requests_min")),
            number(report.get("cpu_ms")),
        ) else {
            continue;
        };
        points.push(InventoryPoint {
            skus,
            brightpearl_requests: requests,
            brightpearl_requests_min: minimum,
            cpu_ms,
        });
    }
    points
}

/// Writes the inventory chart from the reports in `dir` (the call at the end of an inventory
/// run); says where, or why not.
pub fn inventory_from_reports(dir: &Path) -> Result<PathBuf, String> {
    let path = dir.join("inventory.svg");
    inventory_scaling(&path, &inventory_points(dir), 2_000.0)?;
    Ok(path)
}

/// The 0th to 100th percentiles of `sorted` (ascending), for [`latency_distribution`].
pub fn percentiles(sorted: &[f64]) -> Vec<f64> {
    (0..=100).filter_map(|p| crate::measure::percentile(sorted, f64::from(p))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_chart_is_an_svg_naming_its_limit() {
        let dir = std::env::temp_dir().join(format!("pearlsync-chart-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let sorted: Vec<f64> = (1..=200).map(|i| f64::from(i) * 20.0).collect();
        let curve = percentiles(&sorted);
        assert_eq!(curve.len(), 101);
        assert_eq!(curve[50], 2000.0, "the 50th percentile of 20, 40 … 4000 ms");
        let orders = dir.join("orders.svg");
        latency_distribution(
            &orders,
            "orders",
            &[LatencyCurve { label: "warm", percentiles_ms: &curve }],
            &[("p99", 99.0, 10_000.0)],
        )
        .expect("orders chart");
        let cold = dir.join("coldstart.svg");
        init_against_baseline(
            &cold,
            &[InitBar { function: "order-writer", backend: "embedded", init_ms: 3.1 }],
            2.8,
        )
        .expect("coldstart chart");
        let inventory = dir.join("inventory.svg");
        let point = |skus: f64| InventoryPoint {
            skus,
            brightpearl_requests: (skus / 200.0).ceil() + 1.0,
            brightpearl_requests_min: (skus / 200.0).ceil(),
            cpu_ms: skus / 20.0,
        };
        inventory_scaling(&inventory, &[point(1000.0), point(100_000.0)], 2000.0).expect("inventory chart");
        for (path, limit_text) in
            [(&orders, "p99 ≤ 10.0 s"), (&cold, "limit 1.5× baseline = 4.20 ms"), (&inventory, "target 2 s")]
        {
            let svg = std::fs::read_to_string(path).expect("written");
            assert!(svg.starts_with("<svg"), "{}", path.display());
            assert!(svg.contains(limit_text), "{} names {limit_text}", path.display());
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}

//! The latency plot: one cumulative distribution per source and workload, on a log time axis,
//! drawn as SVG by plotters.

use std::path::Path;

use anyhow::Context as _;
use plotters::prelude::*;

use crate::figures::Latencies;

const COLOURS: [RGBColor; 4] =
    [RGBColor(0, 114, 178), RGBColor(0, 158, 115), RGBColor(230, 159, 0), RGBColor(204, 121, 167)];

/// Writes `path`: one panel per workload, one curve per source.
pub fn latency_cdf(path: &Path, workloads: &[(&str, &[Latencies])]) -> anyhow::Result<()> {
    let workloads: Vec<_> = workloads.iter().filter(|(_, series)| !series.is_empty()).collect();
    let width = 560 * workloads.len().max(1) as u32;
    let root = SVGBackend::new(path, (width, 420)).into_drawing_area();
    root.fill(&WHITE).context("drawing the plot")?;
    let panels = root.split_evenly((1, workloads.len().max(1)));
    for ((workload, series), panel) in workloads.iter().zip(panels.iter()) {
        let all = series.iter().flat_map(|s| s.samples_us.iter().copied());
        let (low, high) = all.fold((f64::MAX, 1.0f64), |(lo, hi), v| (lo.min(v.max(1.0)), hi.max(v)));
        let mut chart = ChartBuilder::on(panel)
            .caption(format!("{workload}: VF registered → address in the pipe"), ("sans-serif", 16))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d((low * 0.8..high * 1.25).log_scale(), 0.0..1.0)
            .context("laying out the plot")?;
        chart
            .configure_mesh()
            .x_desc("µs (log scale)")
            .y_desc("fraction of plugs")
            .draw()
            .context("drawing the axes")?;
        for (index, latencies) in series.iter().enumerate() {
            let colour = COLOURS[index % COLOURS.len()];
            let mut sorted = latencies.samples_us.clone();
            sorted.sort_by(f64::total_cmp);
            let n = sorted.len() as f64;
            let points = sorted.iter().enumerate().map(|(i, v)| (v.max(1.0), (i + 1) as f64 / n));
            chart
                .draw_series(LineSeries::new(points, colour.stroke_width(2)))
                .context("drawing a curve")?
                .label(latencies.source.clone())
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], colour.stroke_width(2)));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperLeft)
            .draw()
            .context("drawing the legend")?;
    }
    root.present().with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

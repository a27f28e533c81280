//! A study of your own in a few lines: r₁ of df/dx against depth for a
//! branch-scaled resnet, from a spec string, plotted with gradscope's figures.
//!
//!     cargo run --release --example custom_study -- /tmp/custom
use gradscope::nets::{BnMode, Mlp, Net, NetParams};
use gradscope::probe::{capture_depths, scalar_grid};
use gradscope::report::figure::{LineChart, Mark, Series, save};
use gradscope::report::style::color;
use gradscope::stats::{MeanStd, adjacent_correlation};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "custom-study".into());
    std::fs::create_dir_all(&out)?;
    let depths: Vec<usize> = (1..=40).collect();
    let x = scalar_grid(256, -2.0, 2.0);
    let mut chart = LineChart::new("r₁ of df/dx against depth", "depth", "r₁ (mean of 4 seeds)");
    for (i, spec) in ["resnet-bn", "resnet-bn:alpha=0.5", "resnet-bn:alpha=2"]
        .iter()
        .enumerate()
    {
        let mut r1 = vec![Vec::new(); depths.len()];
        for seed in 0..4 {
            let net = Net::Mlp(Mlp::new(
                &NetParams {
                    arch: spec.parse()?,
                    depth: 40,
                    seed,
                    ..Default::default()
                }
                .check()?,
            )?);
            // One forward pass serves every depth: the depth-L net is the first L blocks.
            for (d, cap) in capture_depths(&net, x.view(), &depths, BnMode::PerSample)?
                .iter()
                .enumerate()
            {
                r1[d].push(adjacent_correlation(cap.input_grads.column(0))?);
            }
        }
        let points = depths
            .iter()
            .zip(&r1)
            .map(|(&d, v)| (d as f64, MeanStd::of(v.iter().copied()).mean))
            .collect();
        chart.push(Series::line(spec.to_string(), points, color(i)).mark(Mark::LinePoints));
    }
    let files = save(
        &chart,
        std::path::Path::new(&out),
        "r1_by_alpha",
        (1000, 650),
    )?;
    println!("wrote {out}/{} and {out}/{}", files.png, files.svg);
    Ok(())
}

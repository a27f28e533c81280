//! A study of your own, with what the built-in studies get from the
//! `Study` trait: cells run in parallel and stored as they finish (a rerun
//! resumes), slices of the cells for several machines (`--shard i/n`, then
//! `--merge`), the folder published as one transaction, and a report drawn
//! from the published files alone.
//!
//! The question: r₁ of df/dx against depth for a branch-scaled resnet,
//! x + α·F(x) (Balduzzi et al. 2017), for α = 1, 0.5 and 2.
//!
//!     cargo run --release --example custom_study -- /tmp/custom
//!     cargo run --release --example custom_study -- /tmp/custom --shard 1/2   # then 2/2
//!     cargo run --release --example custom_study -- /tmp/custom --merge
//!
//! It writes `/tmp/custom/alpha/` (`summary.json`, `r1.csv`, `cells/`) and
//! `/tmp/custom/alpha/report/` (`r1_by_alpha.png`, `.svg`, `report.md`).
//! The `gradscope` binary's commands (`run`, `merge`, `report`) know only
//! the studies of its registry (`crates/cli/src/registry.rs`); adding an
//! entry there gives a study like this one its command, study file and report.
use std::path::Path;

use gradscope::nets::{BnMode, Mlp, Net, NetParams};
use gradscope::probe::{capture_depths, scalar_grid};
use gradscope::report::figure::{LineChart, Mark, Series, save};
use gradscope::report::style::color;
use gradscope::stats::{MeanStd, adjacent_correlation};
use gradscope::studies::provenance::Provenance;
use gradscope::studies::{
    CellCache, LockKind, RunOptions, Shard, Study, StudyError, StudyFolder, StudyResults,
    merge_study, run_shard, run_study,
};
use serde::{Deserialize, Serialize};

const SPECS: [&str; 3] = ["resnet-bn", "resnet-bn:alpha=0.5", "resnet-bn:alpha=2"];
const SEEDS: u64 = 4;
const DEPTH: usize = 40;

/// The study: every (spec, seed) is a cell.
struct Alpha;

/// What `summary.json` holds: r₁ per spec and depth, mean over seeds.
#[derive(Serialize, Deserialize)]
struct Summary {
    provenance: Provenance,
    specs: Vec<String>,
    depths: Vec<usize>,
    r1: Vec<Vec<f64>>,
}

impl StudyResults for Summary {
    fn write(&self, dir: &Path) -> gradscope::studies::Result<()> {
        let mut csv = String::from("spec,depth,r1\n");
        for (spec, row) in self.specs.iter().zip(&self.r1) {
            for (d, r) in self.depths.iter().zip(row) {
                csv.push_str(&format!("{spec},{d},{r}\n"));
            }
        }
        gradscope::contract::io::write_atomic(&dir.join("r1.csv"), csv.as_bytes())?;
        let json = serde_json::to_vec_pretty(self).expect("summary serialises");
        gradscope::contract::io::write_atomic(&dir.join("summary.json"), &json)?;
        Ok(())
    }
}

impl Study for Alpha {
    const NAME: &'static str = "alpha";
    type Cell = (usize, u64);
    /// r₁ at depths 1 … DEPTH.
    type CellOutput = Vec<f64>;
    type Results = Summary;

    fn cells(&self) -> Vec<(usize, u64)> {
        (0..SPECS.len())
            .flat_map(|s| (0..SEEDS).map(move |seed| (s, seed)))
            .collect()
    }

    fn cell_key(&self, &(spec, seed): &(usize, u64)) -> String {
        format!("spec={},seed={seed}", SPECS[spec])
    }

    fn run_cell(&self, &(spec, seed): &(usize, u64)) -> gradscope::studies::Result<Vec<f64>> {
        let bad = |e: String| StudyError::config("spec", e);
        let params = NetParams {
            arch: SPECS[spec].parse().map_err(|e| bad(format!("{e}")))?,
            depth: DEPTH,
            seed,
            ..Default::default()
        };
        let net = Net::Mlp(Mlp::new(&params.check()?)?);
        let depths: Vec<usize> = (1..=DEPTH).collect();
        let x = scalar_grid(256, -2.0, 2.0);
        // One forward pass serves every depth: the depth-L net is the first L blocks.
        capture_depths(&net, x.view(), &depths, BnMode::PerSample)?
            .iter()
            .map(|cap| Ok(adjacent_correlation(cap.input_grads.column(0))?))
            .collect()
    }

    fn summarise(
        &self,
        outputs: Vec<Vec<f64>>,
        provenance: Provenance,
    ) -> gradscope::studies::Result<Summary> {
        let cells = self.cells();
        let r1 = (0..SPECS.len())
            .map(|s| {
                (0..DEPTH)
                    .map(|d| {
                        let v = cells.iter().zip(&outputs).filter(|(c, _)| c.0 == s);
                        MeanStd::of(v.map(|(_, o)| o[d])).mean
                    })
                    .collect()
            })
            .collect();
        Ok(Summary {
            provenance,
            specs: SPECS.map(String::from).to_vec(),
            depths: (1..=DEPTH).collect(),
            r1,
        })
    }

    fn config_json(&self) -> serde_json::Value {
        serde_json::json!({ "specs": SPECS, "seeds": SEEDS, "depth": DEPTH, "points": 256 })
    }
}

/// The report, from the published `summary.json` alone.
fn report(dir: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let s: Summary = serde_json::from_slice(&std::fs::read(dir.join("summary.json"))?)?;
    let out = dir.join("report");
    std::fs::create_dir_all(&out)?;
    let mut chart = LineChart::new(
        "r₁ of df/dx against depth",
        "depth",
        format!("r₁ (mean of {SEEDS} seeds)"),
    );
    let mut md = String::from(
        "# r₁ of df/dx against depth\n\n| spec | depth 1 | depth 10 | depth 40 |\n|---|---|---|---|\n",
    );
    for (i, (spec, row)) in s.specs.iter().zip(&s.r1).enumerate() {
        let points = s
            .depths
            .iter()
            .zip(row)
            .map(|(&d, &r)| (d as f64, r))
            .collect();
        chart.push(Series::line(spec.clone(), points, color(i)).mark(Mark::LinePoints));
        md.push_str(&format!(
            "| {spec} | {:.3} | {:.3} | {:.3} |\n",
            row[0],
            row[9],
            row[DEPTH - 1]
        ));
    }
    let files = save(&chart, &out, "r1_by_alpha", (1000, 650))?;
    md.push_str(&format!("\n![r₁ by α]({})\n", files.png));
    gradscope::contract::io::write_atomic(&out.join("report.md"), md.as_bytes())?;
    println!("report: {}", out.join("report.md").display());
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = args
        .first()
        .cloned()
        .unwrap_or_else(|| "custom-study".into());
    let dir = Path::new(&root).join(Alpha::NAME);
    let shard: Option<Shard> = match args.iter().position(|a| a == "--shard") {
        Some(i) => Some(args.get(i + 1).ok_or("--shard needs i/n")?.parse()?),
        None => None,
    };
    let merge = args.iter().any(|a| a == "--merge");
    let lock = if shard.is_some() {
        LockKind::Shared
    } else {
        LockKind::Exclusive
    };
    let folder = StudyFolder::open(&dir, lock, "custom_study", &|m| eprintln!("{m}"))?;
    let opts = RunOptions {
        cache: Some(CellCache {
            dir: dir.join("cells"),
            resume: true,
        }),
        shard,
        log: Some(std::sync::Arc::new(|m: &str| eprintln!("{m}"))),
        ..Default::default()
    };
    if shard.is_some() {
        let r = run_shard(&Alpha, &opts)?;
        println!(
            "{} of {} cells stored ({} reused); --merge when every shard is done",
            r.cells, r.total, r.reused
        );
        return Ok(());
    }
    let results = if merge {
        merge_study(&Alpha, &opts)?
    } else {
        run_study(&Alpha, &opts)?
    };
    folder.publish(&results)?;
    drop(folder);
    report(&dir)
}

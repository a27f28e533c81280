//! The gradient statistics of a training run, per layer and step (the
//! quantities Cockpit and TensorBoard show): gradient signal-to-noise ratio
//! across a batch's examples, update size, distance from initialisation,
//! effective learning rate of scale-invariant layers, and histograms of
//! gradients and weights on bin edges fixed for the run. Kept in a run's
//! history (and so in its checkpoint and the study's cell store) and
//! written by the studies that train as `train_stats.csv`,
//! `grad_histograms.csv` and `weight_histograms.csv` (see [`write_csv`]).

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::Result;
use crate::io::{Csv, num};

/// Statistics of one run: the layers they are per, the fixed histogram bin
/// edges, and one record per statistics step.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
pub struct TrainStats {
    /// Bin edges of the weight histograms per layer (in layer order),
    /// symmetric about 0 and fixed at the first record from the initial
    /// weights (twice their largest magnitude; the end bins hold the tails).
    pub weight_edges: Vec<Vec<f64>>,
    /// Bin edges of the gradient histograms, in log₁₀|∂L/∂θ| (the same for
    /// every layer; zeros and values below fall into the first bin).
    pub grad_log10_edges: Vec<f64>,
    /// Layers whose parameters (jointly) feed a scale-invariant normaliser
    /// (BN, LN, GN, RMS norm directly after a linear layer; a weight-normed
    /// layer's direction v), whose effective learning rate is η/‖θ‖².
    pub scale_invariant: Vec<bool>,
    /// One record per statistics step.
    pub steps: Vec<StepStats>,
}

impl TrainStats {
    /// Whether no step was recorded (runs without statistics write none).
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }
}

/// The statistics of one optimiser step, per layer (in the run's layer order).
/// Equal when every number is (NaN equal to NaN: a layer without a value
/// has none in both, so a resumed run's history equals an uninterrupted one's).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StepStats {
    /// The step's number, from 1 (the statistics of the update it made).
    pub step: usize,
    /// Its learning rate η.
    #[serde(with = "gradscope_stats::nan")]
    pub lr: f64,
    /// ‖E g‖² / E‖g − E g‖² over the per-example gradients of the step's
    /// batch, layer-level (`gradscope_stats::per_example_gsnr`), BN in eval
    /// mode (per-example gradients of a batch-normalised net are those of
    /// the function it computes at test time).
    #[serde(with = "gradscope_stats::nan::vec")]
    pub gsnr: Vec<f64>,
    /// ‖∂L/∂θ‖ of the batch's mean loss (the gradient the step used).
    #[serde(with = "gradscope_stats::nan::vec")]
    pub grad_norm: Vec<f64>,
    /// ‖θ‖ after the step.
    #[serde(with = "gradscope_stats::nan::vec")]
    pub weight_norm: Vec<f64>,
    /// ‖Δθ‖/‖θ‖, θ before the step.
    #[serde(with = "gradscope_stats::nan::vec")]
    pub update_size: Vec<f64>,
    /// ‖θ − θ₀‖/‖θ₀‖ after the step (NaN for layers initialised at zero).
    #[serde(with = "gradscope_stats::nan::vec")]
    pub distance_from_init: Vec<f64>,
    /// η/‖θ‖² after the step for scale-invariant layers, NaN elsewhere
    /// (van Laarhoven 2017; Hoffer et al. 2018: the step a scale-invariant
    /// layer's direction takes scales with it).
    #[serde(with = "gradscope_stats::nan::vec")]
    pub effective_lr: Vec<f64>,
    /// Counts of the gradient's entries per bin of `grad_log10_edges`.
    pub grad_hist: Vec<Vec<u64>>,
    /// Counts of the weights after the step per bin of the layer's `weight_edges`.
    pub weight_hist: Vec<Vec<u64>>,
}

impl PartialEq for StepStats {
    fn eq(&self, o: &Self) -> bool {
        let same = |a: &[f64], b: &[f64]| {
            a.len() == b.len()
                && a.iter()
                    .zip(b)
                    .all(|(x, y)| x == y || (x.is_nan() && y.is_nan()))
        };
        self.step == o.step
            && same(&[self.lr], &[o.lr])
            && same(&self.gsnr, &o.gsnr)
            && same(&self.grad_norm, &o.grad_norm)
            && same(&self.weight_norm, &o.weight_norm)
            && same(&self.update_size, &o.update_size)
            && same(&self.distance_from_init, &o.distance_from_init)
            && same(&self.effective_lr, &o.effective_lr)
            && self.grad_hist == o.grad_hist
            && self.weight_hist == o.weight_hist
    }
}

/// The columns of `train_stats.csv`, after the run's own (e.g. arch, depth, seed).
pub const STATS_COLUMNS: [&str; 10] = [
    "step",
    "layer",
    "name",
    "lr",
    "gsnr",
    "grad_norm",
    "weight_norm",
    "update_size",
    "distance_from_init",
    "effective_lr",
];

/// Write the statistics of `runs` (each with its identifying values under
/// `id_columns`, and its layer names) in `dir`: `train_stats.csv` (one row
/// per step and layer), `grad_histograms.csv` (one column per decade of
/// |∂L/∂θ|, named by its lower edge, `1e-12` …) and `weight_histograms.csv`
/// (the layer's fixed half-width, then one column per bin, equal bins on
/// ±half-width). Runs without statistics add no rows.
pub fn write_csv(
    dir: &Path,
    id_columns: &[&str],
    runs: &[(Vec<String>, &[String], &TrainStats)],
) -> Result<()> {
    let header = |tail: Vec<String>| -> Vec<String> {
        id_columns
            .iter()
            .map(|s| s.to_string())
            .chain(tail)
            .collect()
    };
    let csv = |cols: &[String]| Csv::new(&cols.iter().map(String::as_str).collect::<Vec<_>>());
    let mut table = csv(&header(
        STATS_COLUMNS.iter().map(|s| s.to_string()).collect(),
    ));
    let first = runs.iter().map(|r| r.2).find(|s| !s.is_empty());
    let grad_cols: Vec<String> = first.map_or(Vec::new(), |s| {
        let e = &s.grad_log10_edges;
        e[..e.len().saturating_sub(1)]
            .iter()
            .map(|lo| format!("1e{lo}"))
            .collect()
    });
    let weight_bins = first
        .and_then(|s| s.weight_edges.first())
        .map_or(0, |e| e.len().saturating_sub(1));
    let mut grad = csv(&header(
        ["step".to_string(), "layer".to_string()]
            .into_iter()
            .chain(grad_cols)
            .collect(),
    ));
    let mut weight = csv(&header(
        ["step", "layer", "half_width"]
            .iter()
            .map(|s| s.to_string())
            .chain((0..weight_bins).map(|k| format!("bin{k}")))
            .collect(),
    ));
    for (id, layers, stats) in runs {
        for s in &stats.steps {
            for (l, name) in layers.iter().enumerate() {
                let at = |v: &[f64]| num(v.get(l).copied().unwrap_or(f64::NAN));
                let mut row = id.clone();
                row.extend([
                    s.step.to_string(),
                    l.to_string(),
                    name.clone(),
                    num(s.lr),
                    at(&s.gsnr),
                    at(&s.grad_norm),
                    at(&s.weight_norm),
                    at(&s.update_size),
                    at(&s.distance_from_init),
                    at(&s.effective_lr),
                ]);
                table.row(&row);
                let lead = |extra: Option<f64>| {
                    let mut row = id.clone();
                    row.extend([s.step.to_string(), l.to_string()]);
                    row.extend(extra.map(num));
                    row
                };
                if let Some(c) = s.grad_hist.get(l) {
                    let mut row = lead(None);
                    row.extend(c.iter().map(u64::to_string));
                    grad.row(&row);
                }
                if let (Some(c), Some(e)) = (s.weight_hist.get(l), stats.weight_edges.get(l)) {
                    let mut row = lead(e.last().copied());
                    row.extend(c.iter().map(u64::to_string));
                    weight.row(&row);
                }
            }
        }
    }
    table.write(&dir.join(files::TRAIN_STATS_CSV))?;
    grad.write(&dir.join(files::GRAD_HISTOGRAMS_CSV))?;
    weight.write(&dir.join(files::WEIGHT_HISTOGRAMS_CSV))
}

/// Files the statistics are written to.
pub mod files {
    /// GSNR, norms, update size, distance from init, effective learning rate
    /// per run, step and layer.
    pub const TRAIN_STATS_CSV: &str = "train_stats.csv";
    /// Gradient histograms per run, step and layer (counts per decade of |g|).
    pub const GRAD_HISTOGRAMS_CSV: &str = "grad_histograms.csv";
    /// Weight histograms per run, step and layer (counts on ±half-width).
    pub const WEIGHT_HISTOGRAMS_CSV: &str = "weight_histograms.csv";
}

/// One row of `train_stats.csv` read back.
#[derive(Clone, Debug, PartialEq)]
pub struct StatsRow {
    /// The run's identifying values (the study's leading columns).
    pub id: Vec<String>,
    /// Optimiser step, from 1.
    pub step: usize,
    /// Layer index.
    pub layer: usize,
    /// Layer name.
    pub name: String,
    /// The values of the remaining columns, in [`STATS_COLUMNS`] order from `lr`.
    pub values: [f64; 7],
}

impl StatsRow {
    /// The value of column `column` (one of [`STATS_COLUMNS`] from `lr` on).
    pub fn get(&self, column: &str) -> Option<f64> {
        let k = STATS_COLUMNS[3..].iter().position(|c| *c == column)?;
        Some(self.values[k])
    }
}

/// Split one CSV line, undoing [`Csv::row`]'s quoting.
fn split_csv(line: &str) -> Vec<String> {
    let (mut out, mut cell, mut quoted) = (Vec::new(), String::new(), false);
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                cell.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => out.push(std::mem::take(&mut cell)),
            _ => cell.push(c),
        }
    }
    out.push(cell);
    out
}

/// Read `train_stats.csv` written by [`write_csv`] with `id_columns`
/// leading columns; a missing file reads as no rows.
pub fn read_stats_csv(path: &Path, id_columns: usize) -> Result<Vec<StatsRow>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(crate::ContractError::io(path, e)),
    };
    let bad = |line: usize, what: &str| {
        crate::ContractError::data(path, format!("line {}: {what}", line + 1))
    };
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate().skip(1) {
        let cells = split_csv(line);
        if cells.len() != id_columns + STATS_COLUMNS.len() {
            return Err(bad(i, "wrong number of columns"));
        }
        let int = |s: &str| s.parse::<usize>().map_err(|_| bad(i, "not an integer"));
        let mut values = [0.0; 7];
        for (v, s) in values.iter_mut().zip(&cells[id_columns + 3..]) {
            *v = s.parse::<f64>().map_err(|_| bad(i, "not a number"))?;
        }
        rows.push(StatsRow {
            id: cells[..id_columns].to_vec(),
            step: int(&cells[id_columns])?,
            layer: int(&cells[id_columns + 1])?,
            name: cells[id_columns + 2].clone(),
            values,
        });
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statistics_written_read_back_equal() {
        let stats = TrainStats {
            weight_edges: vec![vec![-1.0, 0.0, 1.0]; 2],
            grad_log10_edges: vec![-2.0, -1.0, 0.0],
            scale_invariant: vec![false, true],
            steps: vec![StepStats {
                step: 3,
                lr: 0.1,
                gsnr: vec![0.5, f64::NAN],
                grad_norm: vec![1.0, 2.0],
                weight_norm: vec![3.0, 4.0],
                update_size: vec![0.01, 0.02],
                distance_from_init: vec![0.1, f64::NAN],
                effective_lr: vec![f64::NAN, 0.00625],
                grad_hist: vec![vec![1, 2], vec![0, 3]],
                weight_hist: vec![vec![2, 1], vec![3, 0]],
            }],
        };
        let dir = tempfile::tempdir().unwrap();
        let layers = vec!["stem".to_string(), "layers.0.fc".to_string()];
        let id = vec!["resnet:norm=ln,order=postnorm".to_string(), "8".to_string()];
        write_csv(
            dir.path(),
            &["arch", "depth"],
            &[(id.clone(), &layers, &stats)],
        )
        .unwrap();
        let rows = read_stats_csv(&dir.path().join(files::TRAIN_STATS_CSV), 2).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1].id, id);
        assert_eq!((rows[1].step, rows[1].layer), (3, 1));
        assert_eq!(rows[1].name, "layers.0.fc");
        assert_eq!(rows[1].get("effective_lr"), Some(0.00625));
        assert!(rows[0].get("effective_lr").unwrap().is_nan());
        assert_eq!(rows[0].get("gsnr"), Some(0.5));
        let grad = std::fs::read_to_string(dir.path().join(files::GRAD_HISTOGRAMS_CSV)).unwrap();
        assert_eq!(grad.lines().next(), Some("arch,depth,step,layer,1e-2,1e-1"));
        assert!(grad.contains("\n\"resnet:norm=ln,order=postnorm\",8,3,1,0,3\n"));
        let weight =
            std::fs::read_to_string(dir.path().join(files::WEIGHT_HISTOGRAMS_CSV)).unwrap();
        assert!(weight.ends_with(",8,3,1,1,3,0\n"), "{weight}");
    }
}

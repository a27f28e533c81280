//! A shattered run's results and how they are laid out in its folder.

use std::path::Path;

use ndarray::{Array1, Array3, Array4};

use super::{SeedRow, ShatteredSummary, files};
use crate::Result;
use crate::io::{Csv, create_dir, num, remove_stale, write_json, write_npy};

/// Everything a run produced, before it is written.
#[derive(Clone, Debug)]
pub struct ShatteredResults {
    /// What goes into summary.json.
    pub summary: ShatteredSummary,
    /// Rows of per_seed.csv.
    pub per_seed: Vec<SeedRow>,
    /// (N,)
    pub grid: Array1<f64>,
    /// (archs, depths, seeds, N)
    pub input_gradients: Array4<f64>,
    /// (archs, depths, seeds, N/2 + 1)
    pub power_spectra: Array4<f64>,
    /// (archs, depths, seeds, max_lag + 1)
    pub autocorrelation: Array4<f64>,
    /// (archs, depths, N, N) across seeds; None with a single seed.
    pub correlation: Option<Array4<f32>>,
    /// (2, seeds, N): white and brown noise.
    pub noise: Array3<f64>,
    /// The arrays of the nets on images (with `summary.images`).
    pub images: Option<super::ImageArrays>,
}

impl ShatteredResults {
    /// Write the study folder `dir` (created if missing); every file atomically,
    /// `summary.json` last, so its presence means the folder is complete.
    pub fn write(&self, dir: &Path) -> Result<()> {
        create_dir(dir)?;
        write_npy(&dir.join(files::GRID), &self.grid)?;
        write_npy(&dir.join(files::INPUT_GRADIENTS), &self.input_gradients)?;
        write_npy(&dir.join(files::POWER_SPECTRA), &self.power_spectra)?;
        write_npy(&dir.join(files::AUTOCORRELATION), &self.autocorrelation)?;
        write_npy(&dir.join(files::NOISE), &self.noise)?;
        match &self.correlation {
            Some(c) => write_npy(&dir.join(files::CORRELATION), c)?,
            None => remove_stale(&dir.join(files::CORRELATION))?,
        }
        self.summary_csv().write(&dir.join(files::SUMMARY_CSV))?;
        self.per_seed_csv().write(&dir.join(files::PER_SEED_CSV))?;
        self.layer_norms_csv()
            .write(&dir.join(files::LAYER_NORMS_CSV))?;
        self.fits_csv().write(&dir.join(files::FITS_CSV))?;
        match (&self.images, &self.summary.images) {
            (Some(a), Some(s)) => a.write(s, dir)?,
            _ => super::ImageArrays::remove(dir)?,
        }
        write_json(&dir.join(files::SUMMARY), &self.summary)
    }

    fn summary_csv(&self) -> Csv {
        let mut c = Csv::new(&[
            "arch",
            "depth",
            "r1_mean",
            "r1_std",
            "slope_mean",
            "slope_std",
            "growth_mean",
            "input_grad_norm_mean",
            "seeds",
            "excluded",
            "faults",
        ]);
        for r in &self.summary.results {
            c.row(&[
                r.arch.clone(),
                r.depth.to_string(),
                num(r.adjacent_correlation.mean),
                num(r.adjacent_correlation.std),
                num(r.spectral_slope.mean),
                num(r.spectral_slope.std),
                num(r.gradient_growth.mean),
                num(r.layer_grad_norm_mean[0]),
                r.adjacent_correlation.n.to_string(),
                r.adjacent_correlation.excluded.to_string(),
                r.faults.len().to_string(),
            ]);
        }
        c
    }

    fn per_seed_csv(&self) -> Csv {
        let mut c = Csv::new(&[
            "arch",
            "depth",
            "seed",
            "r1",
            "slope",
            "slope_r2",
            "input_grad_norm",
            "growth",
        ]);
        for r in &self.per_seed {
            c.row(&[
                r.arch.clone(),
                r.depth.to_string(),
                r.seed.to_string(),
                num(r.adjacent_correlation),
                num(r.spectral_slope),
                num(r.spectral_slope_r2),
                num(r.input_grad_norm),
                num(r.gradient_growth),
            ]);
        }
        c
    }

    fn layer_norms_csv(&self) -> Csv {
        let mut c = Csv::new(&[
            "arch",
            "depth",
            "layer",
            "grad_norm_mean",
            "grad_norm_std",
            "activation_norm_mean",
        ]);
        for r in &self.summary.results {
            for l in 0..r.layer_grad_norm_mean.len() {
                c.row(&[
                    r.arch.clone(),
                    r.depth.to_string(),
                    l.to_string(),
                    num(r.layer_grad_norm_mean[l]),
                    num(r.layer_grad_norm_std[l]),
                    num(r.activation_norm_mean[l]),
                ]);
            }
        }
        c
    }

    fn fits_csv(&self) -> Csv {
        let mut c = Csv::new(&[
            "arch",
            "quantity",
            "law",
            "a",
            "a_lo",
            "a_hi",
            "rate",
            "rate_lo",
            "rate_hi",
            "r2",
            "used",
            "excluded",
            "excluded_depths",
            "better",
        ]);
        for f in &self.summary.fits {
            for (q, cmp) in [
                ("r1", &f.adjacent_correlation),
                ("roughness", &f.roughness),
                ("input_grad_norm", &f.input_grad_norm),
            ] {
                let Some(cmp) = cmp else { continue };
                for fit in [&cmp.exponential, &cmp.power_law] {
                    let law = serde_name(&fit.law);
                    c.row(&[
                        f.arch.clone(),
                        q.into(),
                        law.clone(),
                        num(fit.a),
                        num(fit.a_lo),
                        num(fit.a_hi),
                        num(fit.rate),
                        num(fit.rate_lo),
                        num(fit.rate_hi),
                        num(fit.line.r2),
                        fit.line.n.to_string(),
                        fit.excluded.len().to_string(),
                        fit.excluded
                            .iter()
                            .map(|e| format!("{}:{}", e.x, serde_name(&e.reason)))
                            .collect::<Vec<_>>()
                            .join(";"),
                        (serde_name(&cmp.better) == law).to_string(),
                    ]);
                }
            }
        }
        c
    }
}

/// The name serde gives a unit variant (or an internally tagged one's tag).
fn serde_name(v: &impl serde::Serialize) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(name)) => name,
        Ok(serde_json::Value::Object(map)) => map
            .get("kind")
            .and_then(|k| k.as_str())
            .unwrap_or_default()
            .to_string(),
        _ => String::new(),
    }
}

//! A norms run's results and how they are laid out in its folder.

use std::path::Path;

use ndarray::Array2;

use super::{NormsSummary, files};
use crate::Result;
use crate::io::{Csv, create_dir, num, write_json, write_npy};

/// Everything a run produced.
#[derive(Clone, Debug)]
pub struct NormsResults {
    /// What goes into summary.json.
    pub summary: NormsSummary,
}

impl NormsResults {
    /// Write the study folder `dir` (created if missing); every file atomically,
    /// `summary.json` last.
    pub fn write(&self, dir: &Path) -> Result<()> {
        create_dir(dir)?;
        let s = &self.summary;
        let mut c = Csv::new(&[
            "arch",
            "activation",
            "init",
            "layer",
            "grad_norm_mean",
            "grad_norm_std",
            "q10",
            "q50",
            "q90",
        ]);
        for r in &s.layers {
            for (l, g) in r.grad_norm.iter().enumerate() {
                c.row(&[
                    r.arch.clone(),
                    r.activation.to_string(),
                    r.init.to_string(),
                    l.to_string(),
                    num(g.summary.mean),
                    num(g.summary.std),
                    num(g.q10),
                    num(g.q50),
                    num(g.q90),
                ]);
            }
        }
        c.write(&dir.join(files::LAYERS_CSV))?;
        let mut c = Csv::new(&[
            "arch",
            "activation",
            "init",
            "kind",
            "name",
            "grad_norm_mean",
            "grad_norm_std",
        ]);
        for r in &s.layers {
            for (kind, names, stats) in [
                ("weight", &r.weight_names, &r.weight_grad_norm),
                ("bias", &r.bias_names, &r.bias_grad_norm),
            ] {
                for (n, g) in names.iter().zip(stats) {
                    c.row(&[
                        r.arch.clone(),
                        r.activation.to_string(),
                        r.init.to_string(),
                        kind.into(),
                        n.clone(),
                        num(g.summary.mean),
                        num(g.summary.std),
                    ]);
                }
            }
        }
        c.write(&dir.join(files::PARAMS_CSV))?;
        let mut c = Csv::new(&[
            "arch",
            "activation",
            "init",
            "sigma_w2",
            "measured_ratio_mean",
            "measured_ratio_std",
            "predicted_ratio",
            "faults",
        ]);
        for r in &s.layers {
            c.row(&[
                r.arch.clone(),
                r.activation.to_string(),
                r.init.to_string(),
                num(r.sigma_w2),
                num(r.backward_ratio.mean),
                num(r.backward_ratio.std),
                num(r.predicted_ratio),
                r.faults.len().to_string(),
            ]);
        }
        c.write(&dir.join(files::RATIOS_CSV))?;
        let mut c = Csv::new(&["w", "length", "autograd", "closed_form"]);
        for ch in &s.chains {
            for (l, (a, f)) in ch.autograd.iter().zip(&ch.closed_form).enumerate() {
                c.row(&[num(ch.w), (l + 1).to_string(), num(*a), num(*f)]);
            }
        }
        c.write(&dir.join(files::CHAIN_CSV))?;
        let mut c = Csv::new(&["residual", "activation", "sigma_w2", "depth", "log10_ratio"]);
        for r in &s.phase {
            for (l, v) in r.log10_ratio.iter().enumerate() {
                c.row(&[
                    r.residual.to_string(),
                    r.activation.to_string(),
                    num(r.sigma_w2),
                    (l + 1).to_string(),
                    num(*v),
                ]);
            }
        }
        c.write(&dir.join(files::PHASE_CSV))?;
        let mut c = Csv::new(&[
            "residual",
            "activation",
            "init",
            "sigma_w2",
            "depth",
            "mean_sq",
            "var_sq",
            "max",
            "min",
        ]);
        for r in &s.jacobian {
            c.row(&[
                r.residual.to_string(),
                r.activation.to_string(),
                format!("{:?}", r.init).to_lowercase(),
                num(r.sigma_w2),
                r.depth.to_string(),
                num(r.mean_sq),
                num(r.var_sq),
                num(r.max),
                num(r.min),
            ]);
        }
        c.write(&dir.join(files::JACOBIAN_CSV))?;
        let len = s
            .layers
            .iter()
            .map(|r| r.grad_norm.len())
            .max()
            .unwrap_or(0);
        let g = Array2::from_shape_fn((s.layers.len(), len), |(i, l)| {
            s.layers[i]
                .grad_norm
                .get(l)
                .map_or(f64::NAN, |x| x.summary.mean)
        });
        write_npy(&dir.join(files::GRAD_NORMS), &g)?;
        let len = s
            .phase
            .iter()
            .map(|r| r.log10_ratio.len())
            .max()
            .unwrap_or(0);
        let ph = Array2::from_shape_fn((s.phase.len(), len), |(i, l)| {
            s.phase[i].log10_ratio.get(l).copied().unwrap_or(f64::NAN)
        });
        write_npy(&dir.join(files::PHASE), &ph)?;
        match &s.images {
            Some(images) => super::images::write(images, dir)?,
            None => super::images::remove(dir)?,
        }
        write_json(&dir.join(files::SUMMARY), &self.summary)
    }
}

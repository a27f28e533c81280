//! The norms study's summary: cells grouped by configuration (seeds last),
//! each group summarised into its part's rows.

use gradscope_nets::{Activation, Arch, BiasInit, WeightInit};
use gradscope_stats::MeanStd;

use super::{
    Cell, CellOutput, ChainSummary, FaultRow, JacobianRow, LayerStat, LayerSummary, NAME,
    NormsConfig, NormsResults, NormsSummary, PhaseRow, SCHEMA, critical_sigma_w2,
};
use crate::Result;
use crate::provenance::Provenance;
use crate::study::Study;

impl NormsConfig {
    /// The summary of the outputs of [`Study::cells`], in that order.
    pub(super) fn summarise_outputs(
        &self,
        outputs: Vec<CellOutput>,
        provenance: Provenance,
    ) -> Result<NormsResults> {
        let p = &self.params;
        let cells = self.cells();
        let mut layers = vec![];
        let mut chains = vec![];
        let mut phase = vec![];
        let mut jac = vec![];
        // Group outputs by configuration (seeds last in the cell order).
        let mut groups: std::collections::BTreeMap<String, (Cell, Vec<CellOutput>)> =
            Default::default();
        for (c, o) in cells.into_iter().zip(outputs) {
            let key = match c {
                Cell::Layers {
                    arch,
                    activation,
                    init,
                    ..
                } => format!("a{arch:03}-{activation:03}-{init:03}"),
                Cell::Chain => "chain".into(),
                Cell::Phase {
                    residual,
                    activation,
                    sigma,
                    ..
                } => format!("p{}-{activation:03}-{sigma:03}", u8::from(residual)),
                Cell::Jacobian {
                    residual,
                    activation,
                    init,
                    ..
                } => format!("j{}-{activation:03}-{init:?}", u8::from(residual)),
                Cell::Images { arch, depth, .. } => format!("i{arch:03}-{depth:03}"),
            };
            groups
                .entry(key)
                .or_insert_with(|| (c.clone(), vec![]))
                .1
                .push(o);
        }
        let mut image_groups = vec![];
        for (_, (cell, outs)) in groups {
            match cell {
                Cell::Images { arch, depth, .. } => image_groups.push(((arch, depth), outs)),
                Cell::Layers {
                    arch,
                    activation,
                    init,
                    ..
                } => {
                    layers.push(self.layers_summary(
                        p.archs[arch],
                        p.activations[activation],
                        p.inits[init],
                        &outs,
                    ));
                }
                Cell::Chain => {
                    if let Some(CellOutput::Chain { autograd }) = outs.into_iter().next() {
                        for (w, row) in p.chain_weights.iter().zip(autograd) {
                            chains.push(ChainSummary {
                                w: *w,
                                closed_form: (1..=p.chain_depth)
                                    .map(|l| w.abs().powi(l as i32 - 1))
                                    .collect(),
                                autograd: row,
                            });
                        }
                    }
                }
                Cell::Phase {
                    residual,
                    activation,
                    sigma,
                    ..
                } => {
                    let grads: Vec<&Vec<f64>> = outs
                        .iter()
                        .filter_map(|o| {
                            if let CellOutput::Phase { grad } = o {
                                Some(grad)
                            } else {
                                None
                            }
                        })
                        .collect();
                    let log_ratio = (1..=p.depth)
                        .map(|l| MeanStd::of(grads.iter().map(|g| (g[0] / g[l]).log10())).mean)
                        .collect();
                    phase.push(PhaseRow {
                        residual,
                        activation: p.phase_activations[activation],
                        sigma_w2: p.phase_sigma_w2[sigma],
                        log10_ratio: log_ratio,
                    });
                }
                Cell::Jacobian {
                    residual,
                    activation,
                    init,
                    ..
                } => {
                    let act = p.jacobian_activations[activation];
                    for (k, &depth) in p.jacobian_depths.iter().enumerate() {
                        let sv: Vec<f64> = outs
                            .iter()
                            .filter_map(|o| {
                                if let CellOutput::Jacobian { singular_values } = o {
                                    singular_values.get(k)
                                } else {
                                    None
                                }
                            })
                            .flatten()
                            .copied()
                            .collect();
                        let sq = MeanStd::of(sv.iter().map(|s| s * s));
                        jac.push(JacobianRow {
                            residual,
                            activation: act,
                            init,
                            sigma_w2: critical_sigma_w2(act),
                            depth,
                            mean_sq: sq.mean,
                            var_sq: sq.std * sq.std,
                            max: sv.iter().copied().fold(f64::NAN, f64::max),
                            min: sv.iter().copied().fold(f64::NAN, f64::min),
                            singular_values: sv,
                        });
                    }
                }
            }
        }
        Ok(NormsResults {
            summary: NormsSummary {
                schema: SCHEMA.into(),
                study: NAME.into(),
                provenance,
                config: p.clone(),
                layers,
                chains,
                phase,
                jacobian: jac,
                images: self
                    .images
                    .is_some()
                    .then(|| self.summarise_images(image_groups)),
            },
        })
    }

    fn layers_summary(
        &self,
        arch: Arch,
        act: Activation,
        init: WeightInit,
        outs: &[CellOutput],
    ) -> LayerSummary {
        let p = &self.params;
        let mut grads: Vec<&Vec<f64>> = vec![];
        let mut moments: Vec<&Vec<f64>> = vec![];
        let mut wg: Vec<&Vec<(String, f64)>> = vec![];
        let mut bg: Vec<&Vec<(String, f64)>> = vec![];
        let mut faults = vec![];
        for (s, o) in outs.iter().enumerate() {
            if let CellOutput::Layers {
                grad,
                second_moment,
                weight_grads,
                bias_grads,
                fault,
            } = o
            {
                grads.push(grad);
                moments.push(second_moment);
                wg.push(weight_grads);
                bg.push(bias_grads);
                if let Some((pass, layer, name, nan)) = fault {
                    faults.push(FaultRow {
                        seed: s,
                        pass: pass.clone(),
                        layer: *layer,
                        name: name.clone(),
                        nan: *nan,
                    });
                }
            }
        }
        let per = |vs: &[&Vec<f64>], l: usize| -> Vec<f64> {
            vs.iter().filter_map(|v| v.get(l).copied()).collect()
        };
        let stat = |v: &[f64]| LayerStat::of(v);
        let n_h = grads.first().map_or(0, |g| g.len());
        let grad_norm: Vec<LayerStat> = (0..n_h).map(|l| stat(&per(&grads, l))).collect();
        let ratios: Vec<f64> = grads
            .iter()
            .flat_map(|g| (1..g.len()).map(move |l| g[l - 1] / g[l]))
            .filter(|r| r.is_finite())
            .collect();
        let named = |v: &[&Vec<(String, f64)>]| -> (Vec<String>, Vec<LayerStat>) {
            let names: Vec<String> = v
                .first()
                .map(|x| x.iter().map(|(n, _)| n.clone()).collect())
                .unwrap_or_default();
            let stats = (0..names.len())
                .map(|k| {
                    stat(
                        &v.iter()
                            .filter_map(|x| x.get(k).map(|y| y.1))
                            .collect::<Vec<_>>(),
                    )
                })
                .collect();
            (names, stats)
        };
        let (weight_names, weight_grad_norm) = named(&wg);
        let (bias_names, bias_grad_norm) = named(&bg);
        // Mean-field prediction for plain nets without BN: q_l = σ_w²·mean(h_{l−1}²) + σ_b².
        let sigma_w2 = init.variance(p.width, p.width) * p.width as f64;
        let sigma_b2 = match p.bias_init {
            BiasInit::Zero => 0.0,
            BiasInit::Normal { std } => std * std,
            BiasInit::Uniform { bound } => bound * bound / 3.0,
            BiasInit::Torch => 1.0 / (3.0 * p.width as f64),
        };
        let predicted_ratio = match arch {
            Arch::Plain {
                norm: gradscope_nets::Norm::None,
                looks_linear: false,
            } => {
                let chis: Vec<f64> = (1..n_h)
                    .map(|l| {
                        let q = sigma_w2 * MeanStd::of(per(&moments, l - 1)).mean + sigma_b2;
                        sigma_w2 * act.mean_squared_slope(q)
                    })
                    .collect();
                MeanStd::of(chis.iter().map(|c| c.sqrt())).mean
            }
            _ => f64::NAN,
        };
        let activation_rms = (0..n_h)
            .map(|l| MeanStd::of(per(&moments, l).into_iter().map(f64::sqrt)).mean)
            .collect();
        LayerSummary {
            activation_rms,
            arch: arch.to_string(),
            activation: act,
            init,
            sigma_w2,
            grad_norm,
            backward_ratio: MeanStd::of(ratios.iter().copied()),
            predicted_ratio,
            weight_names,
            weight_grad_norm,
            bias_names,
            bias_grad_norm,
            faults,
        }
    }
}

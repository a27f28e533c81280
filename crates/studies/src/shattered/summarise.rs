//! The summary of a shattered run from its cells: statistics per (arch,
//! depth) over seeds, the decay fits, the calibration noise and the arrays.

use super::*;

impl ShatteredConfig {
    /// The results of every cell, in [`Study::cells`] order, summarised.
    pub(crate) fn summarise_cells(
        &self,
        results: Vec<Vec<DepthResult>>,
        provenance: Provenance,
    ) -> Result<ShatteredResults> {
        let p = &self.params;
        let cells = self.cells();
        let (na, nd, ns, n) = (p.archs.len(), p.depths.len(), p.seeds, p.points);
        let bins = n / 2 + 1;
        let mut input_gradients = Array4::<f64>::zeros((na, nd, ns, n));
        let mut power_spectra = Array4::<f64>::zeros((na, nd, ns, bins));
        let mut acfs = Array4::<f64>::zeros((na, nd, ns, self.max_lag() + 1));
        let mut by_cell: Vec<Vec<Option<DepthResult>>> = vec![vec![None; ns]; na * nd];
        let mut image_outputs = Vec::new();
        for (cell, per_depth) in cells.iter().zip(results) {
            if cell.images {
                image_outputs.push(((cell.arch, cell.seed), per_depth));
                continue;
            }
            for (d, r) in per_depth.into_iter().enumerate() {
                input_gradients
                    .slice_mut(s![cell.arch, d, cell.seed, ..])
                    .assign(&aview1(&r.input_grads));
                power_spectra
                    .slice_mut(s![cell.arch, d, cell.seed, ..])
                    .assign(&aview1(&r.spectrum));
                acfs.slice_mut(s![cell.arch, d, cell.seed, ..])
                    .assign(&aview1(&r.acf));
                by_cell[cell.arch * nd + d][cell.seed] = Some(r);
            }
        }

        let mut rows = Vec::new();
        let mut per_seed = Vec::new();
        for (a, arch) in p.archs.iter().enumerate() {
            for (d, &depth) in p.depths.iter().enumerate() {
                let rs: Vec<&DepthResult> = by_cell[a * nd + d]
                    .iter()
                    .map(|r| r.as_ref().expect("every cell ran"))
                    .collect();
                let layers = rs[0].layer_grad_norms.len();
                let per_layer = |f: &dyn Fn(&DepthResult) -> &Vec<f64>| -> Vec<MeanStd> {
                    (0..layers)
                        .map(|l| MeanStd::of(rs.iter().map(|r| f(r)[l])))
                        .collect()
                };
                let grad = per_layer(&|r| &r.layer_grad_norms);
                let act = per_layer(&|r| &r.activation_norms);
                let growth = |r: &DepthResult| {
                    (r.layer_grad_norms[0] / r.layer_grad_norms[depth]).powf(1.0 / depth as f64)
                };
                for (s, r) in rs.iter().enumerate() {
                    per_seed.push(SeedRow {
                        arch: arch.to_string(),
                        depth,
                        seed: s,
                        adjacent_correlation: r.r1,
                        spectral_slope: r.slope.map_or(f64::NAN, |f| f.slope),
                        spectral_slope_r2: r.slope.map_or(f64::NAN, |f| f.r2),
                        input_grad_norm: r.layer_grad_norms[0],
                        gradient_growth: growth(r),
                    });
                }
                rows.push(DepthSummary {
                    arch: arch.to_string(),
                    depth,
                    adjacent_correlation: MeanStd::of(rs.iter().map(|r| r.r1)),
                    spectral_slope: MeanStd::of(
                        rs.iter().map(|r| r.slope.map_or(f64::NAN, |f| f.slope)),
                    ),
                    gradient_growth: MeanStd::of(rs.iter().map(|r| growth(r))),
                    layer_grad_norm_mean: grad.iter().map(|m| m.mean).collect(),
                    layer_grad_norm_std: grad.iter().map(|m| m.std).collect(),
                    activation_norm_mean: act.iter().map(|m| m.mean).collect(),
                    faults: rs.iter().flat_map(|r| r.faults.iter().cloned()).collect(),
                });
            }
        }

        let depths_f: Vec<f64> = p.depths.iter().map(|&d| d as f64).collect();
        let fits = p
            .archs
            .iter()
            .enumerate()
            .map(|(a, arch)| {
                let row = |d: usize| &rows[a * nd + d];
                let r1: Vec<f64> = (0..nd).map(|d| row(d).adjacent_correlation.mean).collect();
                let se: Vec<f64> = (0..nd).map(|d| row(d).adjacent_correlation.sem()).collect();
                let rough: Vec<f64> = r1.iter().map(|r| 1.0 - r).collect();
                let norm0: Vec<f64> = (0..nd).map(|d| row(d).layer_grad_norm_mean[0]).collect();
                let fit = |y: &[f64], rule: ExclusionRule| {
                    let mut input = FitInput::new(&depths_f, y);
                    input.se = Some(&se);
                    input.rule = rule;
                    input.compare_decays(Confidence::P95).ok()
                };
                ArchFits {
                    arch: arch.to_string(),
                    adjacent_correlation: fit(
                        &r1,
                        ExclusionRule {
                            floor_in_se: Some(FIT_FLOOR_IN_SE),
                            ..ExclusionRule::default()
                        },
                    ),
                    roughness: fit(
                        &rough,
                        ExclusionRule {
                            saturation: Some(Saturation {
                                limit: 1.0,
                                k: FIT_FLOOR_IN_SE,
                            }),
                            ..ExclusionRule::default()
                        },
                    ),
                    input_grad_norm: FitInput::new(&depths_f, &norm0)
                        .compare_decays(Confidence::P95)
                        .ok(),
                }
            })
            .collect();

        let references = noise_references(p, self.band)?;
        let correlation = if ns >= 2 {
            let mut m = Array4::<f32>::zeros((na, nd, n, n));
            for a in 0..na {
                for d in 0..nd {
                    let samples = input_gradients.slice(s![a, d, .., ..]);
                    // Converted in place: no third N × N array.
                    m.slice_mut(s![a, d, .., ..])
                        .zip_mut_with(&correlation_matrix(samples)?, |m, &r| *m = r as f32);
                }
            }
            Some(m)
        } else {
            None
        };

        let (image_summary, image_arrays) = match self.images {
            Some(_) => {
                let (s, a) = self.summarise_images(image_outputs);
                (Some(s), Some(a))
            }
            None => (None, None),
        };
        Ok(ShatteredResults {
            summary: ShatteredSummary {
                schema: SCHEMA.into(),
                study: NAME.into(),
                provenance,
                config: p.clone(),
                band: self.band,
                references: references.summaries,
                results: rows,
                fits,
                images: image_summary,
            },
            per_seed,
            grid: scalar_grid(n, p.x_min, p.x_max).column(0).to_owned(),
            input_gradients,
            power_spectra,
            autocorrelation: acfs,
            correlation,
            noise: references.signals,
            images: image_arrays,
        })
    }
}

struct References {
    summaries: Vec<NoiseReference>,
    /// (2, seeds, N): white then brown.
    signals: Array3<f64>,
}

fn noise_references(p: &ShatteredParams, band: Band) -> Result<References> {
    let plan = Spectrum::new(p.points)?;
    let mut signals = Array3::<f64>::zeros((2, p.seeds, p.points));
    let mut summaries = Vec::new();
    for (k, name) in ["white", "brown"].into_iter().enumerate() {
        let mut r1 = Vec::new();
        let mut slope = Vec::new();
        for s in 0..p.seeds {
            let mut rng =
                rand::rngs::StdRng::seed_from_u64(derive_seed(p.seed, &format!("{name}{s}")));
            let g = if k == 0 {
                white_noise(p.points, &mut rng)
            } else {
                brown_noise(p.points, &mut rng)
            };
            r1.push(adjacent_correlation(g.view())?);
            slope.push(spectral_slope(plan.power(g.view())?.view(), band)?.slope);
            signals.slice_mut(s![k, s, ..]).assign(&g);
        }
        summaries.push(NoiseReference {
            name: name.into(),
            adjacent_correlation: MeanStd::of(r1),
            spectral_slope: MeanStd::of(slope),
        });
    }
    Ok(References { summaries, signals })
}

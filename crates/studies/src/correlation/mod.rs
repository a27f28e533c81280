//! Gradient correlation beyond one dimension.
//!
//! Two views of the shattering of Balduzzi et al. 2017 ("The Shattered
//! Gradients Problem", ICML, arXiv:1702.08591) that a 1-D grid does not give:
//!
//! - **Pictures**: a net on 2-D inputs over an H × H grid of the plane; the
//!   picture of ∂f/∂x₁ and of ‖∇ₓf‖, its lag-1 correlation along both axes,
//!   its radially averaged power spectrum P(k) with its log-log slope
//!   (0: white noise; ≈ −2 or steeper: smooth) and its radially averaged
//!   autocorrelation. The paper's figures show feedforward pictures turning
//!   to noise with depth while resnet pictures stay smooth.
//! - **Per-example similarity on real data**: for B training examples of the
//!   embedded digits, the per-example gradients of the cross-entropy loss
//!   with respect to all parameters, their B × B Gram and cosine matrices per
//!   layer and for the whole net (computed from the per-layer Gram trick, never
//!   B gradient copies), the mean off-diagonal cosine against depth, the
//!   gradient coherence ‖ḡ‖²/mean‖gᵢ‖² and the signal-to-noise ratio of the
//!   mean gradient, and the cosine as a function of the distance between inputs.
//!
//! - **Images** (with `image_archs`): the same per-example similarity for
//!   conv nets of He et al. 2016a (plain and residual, BN) on a batch of real
//!   images, same-class against different-class pairs ([`images`]).
//!
//! A cell is one (arch, seed): one net per view serves every depth (the
//! depth-L net is the first L blocks of the deepest one); an image cell is
//! one (image arch, depth, seed).

pub mod images;

use gradscope_engine::{Engine, Options, Real, Task, Want};
use gradscope_nets::{Arch, BnMode, Mlp, Net, NetParams, Precision, derive_seed};
use gradscope_probe::capture_depths;
use gradscope_stats::{
    LineFit, MeanStd, PictureStats, coherence, cosine_from_gram, gradient_snr, mean_off_diagonal,
    power_law_reference, quantile,
};
use ndarray::{Array1, Array2, Array4, Array5, ArrayView2, s};
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use crate::provenance::Provenance;
use crate::runner::RunOptions;
use crate::study::{Study, StudyResults, run_study};
use crate::{Result, StudyError};

pub use gradscope_contract::correlation::{
    CorrelationData, CorrelationParams, CorrelationResults, CorrelationSummary, DepthSummary, NAME,
    PlaneReference, SCHEMA, SeedRow, files,
};

impl crate::Params for CorrelationParams {
    type Config = CorrelationConfig;
    fn quick() -> Self {
        CorrelationParams::quick()
    }
    fn check(&self) -> Result<CorrelationConfig> {
        check(self)
    }
}

/// Validate `params` and load the examples: the only way to a runnable study.
pub fn check(params: &CorrelationParams) -> Result<CorrelationConfig> {
    let mut p = params.clone();
    crate::validate::check_archs(&p.archs, true)?;
    crate::validate::check_depths(&mut p.depths)?;
    if !(8..=512).contains(&p.side) {
        return Err(StudyError::config(
            "side",
            format!("must be 8..=512, got {}", p.side),
        ));
    }
    if !(p.extent.is_finite() && p.extent > 0.0) {
        return Err(StudyError::config(
            "extent",
            format!("must be a positive number, got {}", p.extent),
        ));
    }
    if !(1..=1_000).contains(&p.seeds) {
        return Err(StudyError::config(
            "seeds",
            format!("must be 1..=1000, got {}", p.seeds),
        ));
    }
    let digits = gradscope_data::digits().map_err(|e| StudyError::config("data", e.to_string()))?;
    let n = digits.labels.len();
    if !(4..=n.min(2048)).contains(&p.examples) {
        return Err(StudyError::config(
            "examples",
            format!("must be 4..={}, got {}", n.min(2048), p.examples),
        ));
    }
    if !(1..=64).contains(&p.distance_bins) {
        return Err(StudyError::config(
            "distance_bins",
            format!("must be 1..=64, got {}", p.distance_bins),
        ));
    }
    let images = images::check(&mut p)?;
    let max_depth = *p.depths.last().expect("non-empty");
    let (mut plane_nets, mut digit_nets) = (vec![], vec![]);
    for &arch in &p.archs {
        plane_nets.push(net_params(&p, arch, max_depth, 2, 1).check()?);
        digit_nets.push(net_params(&p, arch, max_depth, 64, 10).check()?);
    }
    // A fixed, seeded choice of B examples (the same for every net).
    let order = gradscope_train::epoch_batches(n, n, derive_seed(p.seed, "examples"))[0].clone();
    // Sorted by class, so that class structure shows as blocks in the cosine matrices.
    let mut pick = order[..p.examples].to_vec();
    pick.sort_by_key(|&i| (digits.labels[i], i));
    let x = Array2::from_shape_fn((p.examples, 64), |(i, j)| {
        digits.images[pick[i] * 64 + j] as f64
    });
    let y: Vec<usize> = pick.iter().map(|&i| digits.labels[i] as usize).collect();
    // Distance bins with equal numbers of pairs.
    let distances: Vec<f64> = pairs(p.examples)
        .map(|(i, j)| distance(x.row(i), x.row(j)))
        .collect();
    let edges: Vec<f64> = (0..=p.distance_bins)
        .map(|k| quantile(&distances, k as f64 / p.distance_bins as f64))
        .collect();
    Ok(CorrelationConfig {
        params: p,
        plane_nets,
        digit_nets,
        x,
        y,
        edges,
        images,
    })
}

/// The net of `arch` at `depth` with the given input and output sizes.
fn net_params(
    p: &CorrelationParams,
    arch: Arch,
    depth: usize,
    input_dim: usize,
    output_dim: usize,
) -> NetParams {
    NetParams {
        arch,
        depth,
        width: p.width,
        input_dim,
        output_dim,
        activation: Default::default(),
        weight_init: p.weight_init,
        bias_init: p.bias_init,
        precision: p.dtype,
        seed: 0,
    }
}

/// (layer name, B × B Gram matrix) for every layer with parameters.
type LayerGrams = Vec<(String, Array2<f64>)>;

/// The per-example Gram matrices of the digits' loss gradients per layer,
/// at each depth, from one forward pass.
struct DepthGrams<'a> {
    x: &'a Array2<f64>,
    y: &'a [usize],
    depths: &'a [usize],
}

impl Task for DepthGrams<'_> {
    type Output = Vec<LayerGrams>;
    fn run<T: Real>(self, engine: &mut dyn Engine<T>) -> gradscope_engine::Result<Vec<LayerGrams>> {
        let fwd = engine.forward(self.x.mapv(T::of).view(), true)?;
        self.depths
            .iter()
            .map(|&depth| {
                // ∂ℓᵢ/∂zᵢ = softmax(zᵢ) − onehot(yᵢ): example i's own loss.
                let mut d = engine.output(&fwd, depth)?;
                for (i, mut row) in d.rows_mut().into_iter().enumerate() {
                    let m = row
                        .iter()
                        .copied()
                        .fold(T::neg_infinity(), num_traits::Float::max);
                    row.mapv_inplace(|v| (v - m).exp());
                    let s: T = row.sum();
                    row.mapv_inplace(|v| v / s);
                    row[self.y[i]] -= T::one();
                }
                let want = Want {
                    gram: true,
                    ..Want::default()
                };
                Ok(engine.backward(&fwd, depth, Some(d.view()), want)?.gram)
            })
            .collect()
    }
}

fn pairs(n: usize) -> impl Iterator<Item = (usize, usize)> {
    (0..n).flat_map(move |i| (i + 1..n).map(move |j| (i, j)))
}

fn distance(a: ndarray::ArrayView1<f64>, b: ndarray::ArrayView1<f64>) -> f64 {
    a.iter()
        .zip(b)
        .map(|(u, v)| (u - v).powi(2))
        .sum::<f64>()
        .sqrt()
}

/// A validated correlation study with its examples.
#[derive(Clone, Debug)]
pub struct CorrelationConfig {
    params: CorrelationParams,
    plane_nets: Vec<gradscope_nets::NetSpec>,
    digit_nets: Vec<gradscope_nets::NetSpec>,
    /// The B digits, (B, 64) in [0, 1].
    x: Array2<f64>,
    y: Vec<usize>,
    /// Edges of the distance bins (distance_bins + 1 values).
    edges: Vec<f64>,
    /// The batch of images and its shape, with `image_archs`.
    images: Option<images::ImageSetup>,
}

/// One unit of work.
#[derive(Clone, Debug)]
pub enum Cell {
    /// Every depth of one MLP (arch, seed).
    Mlp(MlpCell),
    /// One net on images.
    Images {
        /// Index into image_archs.
        arch: usize,
        /// Index into image_depths.
        depth: usize,
        /// Seed index.
        seed: usize,
    },
}

/// Every depth of one (arch, seed) of the plane and the digits.
#[derive(Clone, Debug)]
pub struct MlpCell {
    /// Index into the configured archs.
    pub arch: usize,
    /// Seed index.
    pub seed: usize,
}

/// What a cell gives.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum CellOutput {
    /// Every depth of one MLP.
    Mlp(Vec<DepthOutput>),
    /// One net on images.
    Images(images::ImageOutput),
}

/// What one depth of one cell gives.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DepthOutput {
    /// ∂f/∂x₁ over the grid, row-major (x₂ down the rows, x₁ along them).
    #[serde(with = "gradscope_stats::nan::vec")]
    picture: Vec<f64>,
    /// ‖∇ₓf‖ over the grid.
    #[serde(with = "gradscope_stats::nan::vec")]
    norm_picture: Vec<f64>,
    #[serde(with = "gradscope_stats::nan")]
    r1: f64,
    slope: Option<LineFit>,
    #[serde(with = "gradscope_stats::nan::vec")]
    radial_spectrum: Vec<f64>,
    #[serde(with = "gradscope_stats::nan::vec")]
    radial_acf: Vec<f64>,
    #[serde(with = "gradscope_stats::nan")]
    mean_cosine: f64,
    #[serde(with = "gradscope_stats::nan::vec")]
    layer_cosine: Vec<f64>,
    layer_names: Vec<String>,
    #[serde(with = "gradscope_stats::nan")]
    coherence: f64,
    #[serde(with = "gradscope_stats::nan")]
    snr: f64,
    #[serde(with = "gradscope_stats::nan::vec")]
    cosine_by_distance: Vec<f64>,
    /// The whole-net cosine matrix, for seed 0 only.
    cosine: Option<Vec<f32>>,
}

impl CorrelationConfig {
    /// The validated parameters.
    pub fn params(&self) -> &CorrelationParams {
        &self.params
    }

    /// Run every cell and summarise (see [`run_study`]).
    pub fn run(&self, opts: &RunOptions) -> Result<CorrelationResults> {
        run_study(self, opts)
    }

    /// Radial band of the slope fits ([`gradscope_stats::radial_band`]).
    pub fn radial_band(&self) -> (usize, usize) {
        gradscope_stats::radial_band(self.params.side)
    }

    /// Centres of the grid's cells along one axis.
    pub fn axis(&self) -> Array1<f64> {
        let (n, e) = (self.params.side, self.params.extent);
        Array1::from_shape_fn(n, |i| -e + 2.0 * e * i as f64 / (n - 1) as f64)
    }

    fn net_seed(&self, s: usize) -> u64 {
        derive_seed(self.params.seed, &format!("seed{s}"))
    }

    /// The weights' seed of seed index `s` of `part`.
    fn net_seed_of(&self, part: &str, s: usize) -> u64 {
        derive_seed(self.params.seed, &format!("{part}-seed{s}"))
    }

    fn plane(&self, cell: &MlpCell) -> Result<Vec<(Array2<f64>, Array2<f64>)>> {
        let p = &self.params;
        let net = Net::Mlp(Mlp::new(
            &self.plane_nets[cell.arch].with_seed(self.net_seed(cell.seed)),
        )?);
        let axis = self.axis();
        let n = p.side;
        let grid =
            Array2::from_shape_fn(
                (n * n, 2),
                |(k, d)| if d == 0 { axis[k % n] } else { axis[k / n] },
            );
        let caps = capture_depths(&net, grid.view(), &p.depths, BnMode::PerSample)?;
        Ok(caps
            .into_iter()
            .map(|c| {
                let g = &c.input_grads;
                let d1 = Array2::from_shape_fn((n, n), |(i, j)| g[[i * n + j, 0]]);
                let norm = Array2::from_shape_fn((n, n), |(i, j)| {
                    g[[i * n + j, 0]].hypot(g[[i * n + j, 1]])
                });
                (d1, norm)
            })
            .collect())
    }

    /// Per-example loss gradients' Gram matrices per layer at every depth.
    fn grams(&self, cell: &MlpCell) -> Result<Vec<LayerGrams>> {
        let net = Net::Mlp(Mlp::new(
            &self.digit_nets[cell.arch].with_seed(self.net_seed(cell.seed)),
        )?);
        let task = DepthGrams {
            x: &self.x,
            y: &self.y,
            depths: &self.params.depths,
        };
        Ok(gradscope_engine::run(
            &net,
            Options::once(BnMode::PerSample),
            task,
        )?)
    }

    fn cosine_by_distance(&self, c: ArrayView2<f64>) -> Vec<f64> {
        let bins = self.params.distance_bins;
        let (mut sum, mut count) = (vec![0.0; bins], vec![0usize; bins]);
        for (i, j) in pairs(self.params.examples) {
            let dist = distance(self.x.row(i), self.x.row(j));
            let b = self.edges[1..bins].iter().filter(|&&e| dist > e).count();
            if c[[i, j]].is_finite() {
                sum[b] += c[[i, j]];
                count[b] += 1;
            }
        }
        sum.iter()
            .zip(&count)
            .map(|(s, &k)| if k > 0 { s / k as f64 } else { f64::NAN })
            .collect()
    }
}

impl Study for CorrelationConfig {
    const NAME: &'static str = NAME;
    type Cell = Cell;
    type CellOutput = CellOutput;
    type Results = CorrelationResults;

    fn cells(&self) -> Vec<Cell> {
        let p = &self.params;
        let seeds = p.seeds;
        let mut cells: Vec<Cell> = (0..p.archs.len())
            .flat_map(|arch| (0..seeds).map(move |seed| Cell::Mlp(MlpCell { arch, seed })))
            .collect();
        if self.images.is_some() {
            for arch in 0..p.image_archs.len() {
                for depth in 0..p.image_depths.len() {
                    cells.extend((0..seeds).map(|seed| Cell::Images { arch, depth, seed }));
                }
            }
        }
        cells
    }

    fn cell_key(&self, c: &Cell) -> String {
        let p = &self.params;
        match c {
            Cell::Mlp(c) => format!("arch={},seed={}", p.archs[c.arch], c.seed),
            Cell::Images { arch, depth, seed } => format!(
                "image_arch={},depth={},seed={seed}",
                p.image_archs[*arch], p.image_depths[*depth]
            ),
        }
    }

    fn run_cell(&self, cell: &Cell) -> Result<CellOutput> {
        match cell {
            Cell::Mlp(c) => Ok(CellOutput::Mlp(self.mlp_cell(c)?)),
            Cell::Images { arch, depth, seed } => {
                Ok(CellOutput::Images(self.image_cell(*arch, *depth, *seed)?))
            }
        }
    }

    fn summarise(
        &self,
        outputs: Vec<CellOutput>,
        provenance: Provenance,
    ) -> Result<CorrelationResults> {
        let (mut mlp, mut groups) = (Vec::new(), Vec::<((usize, usize), Vec<_>)>::new());
        for (cell, out) in self.cells().into_iter().zip(outputs) {
            match (cell, out) {
                (Cell::Mlp(_), CellOutput::Mlp(o)) => mlp.push(o),
                (Cell::Images { arch, depth, .. }, CellOutput::Images(o)) => {
                    match groups.last_mut() {
                        Some((key, outs)) if *key == (arch, depth) => outs.push(o),
                        _ => groups.push(((arch, depth), vec![o])),
                    }
                }
                _ => {
                    return Err(StudyError::Data {
                        path: "cell".into(),
                        reason: "a stored cell's output is of another part".into(),
                    });
                }
            }
        }
        let mut results = self.summarise_mlp(mlp, provenance)?;
        if self.images.is_some() {
            let (images, cosines) = self.summarise_images(groups)?;
            results.summary.images = Some(images);
            results.image_cosines = cosines;
        }
        Ok(results)
    }

    fn config_json(&self) -> serde_json::Value {
        serde_json::to_value(&self.params).expect("parameters serialise")
    }

    fn memory_estimate_gib(&self, threads: usize) -> Option<f64> {
        let p = &self.params;
        let bytes = if p.dtype == Precision::F32 { 4.0 } else { 8.0 };
        let layers = (*p.depths.last().unwrap_or(&1) * 2 + 2) as f64;
        // The dense path keeps about three (points × width) buffers per layer (measured: 1.2 GiB per net at the defaults).
        let per_net = 3.0 * layers * (p.side * p.side).max(p.examples) as f64 * p.width as f64;
        Some(threads.max(1) as f64 * per_net * bytes / (1u64 << 30) as f64)
    }
}

impl CorrelationConfig {
    /// Every depth of one MLP cell: the pictures and the digits' Grams.
    fn mlp_cell(&self, cell: &MlpCell) -> Result<Vec<DepthOutput>> {
        let (lo, hi) = self.radial_band();
        let pictures = self.plane(cell)?;
        let grams = self.grams(cell)?;
        pictures
            .into_iter()
            .zip(grams)
            .map(|((d1, norm), layers)| {
                let st = PictureStats::of(d1.view(), (lo, hi))?;
                let b = self.params.examples;
                let total = layers
                    .iter()
                    .fold(Array2::<f64>::zeros((b, b)), |acc, (_, g)| acc + g);
                let cos = cosine_from_gram(total.view())?;
                let layer_cosine = layers
                    .iter()
                    .map(|(_, g)| {
                        cosine_from_gram(g.view()).and_then(|c| mean_off_diagonal(c.view()))
                    })
                    .collect::<std::result::Result<Vec<f64>, _>>()?;
                Ok(DepthOutput {
                    picture: d1.iter().copied().collect(),
                    norm_picture: norm.iter().copied().collect(),
                    r1: st.r1,
                    slope: st.slope,
                    radial_spectrum: st.radial_spectrum.to_vec(),
                    radial_acf: st.radial_acf.to_vec(),
                    mean_cosine: mean_off_diagonal(cos.view())?,
                    layer_cosine,
                    layer_names: layers.iter().map(|(n, _)| n.clone()).collect(),
                    coherence: coherence(total.view())?,
                    snr: gradient_snr(total.view())?,
                    cosine_by_distance: self.cosine_by_distance(cos.view()),
                    cosine: (cell.seed == 0).then(|| cos.iter().map(|&v| v as f32).collect()),
                })
            })
            .collect()
    }

    fn summarise_mlp(
        &self,
        outputs: Vec<Vec<DepthOutput>>,
        provenance: Provenance,
    ) -> Result<CorrelationResults> {
        let p = &self.params;
        let (na, nd, ns, n, b) = (p.archs.len(), p.depths.len(), p.seeds, p.side, p.examples);
        let radii = n / 2 + 1;
        let mut pictures = Array5::<f64>::zeros((na, nd, ns, n, n));
        let mut norm_pictures = Array5::<f64>::zeros((na, nd, ns, n, n));
        let mut spectra = Array4::<f64>::from_elem((na, nd, ns, radii), f64::NAN);
        let mut cosines = Array4::<f32>::from_elem((na, nd, b, b), f32::NAN);
        let mut by: Vec<Vec<Option<DepthOutput>>> = vec![vec![None; ns]; na * nd];
        let cells = (0..na).flat_map(|arch| (0..ns).map(move |seed| MlpCell { arch, seed }));
        for (cell, per_depth) in cells.zip(outputs) {
            for (d, o) in per_depth.into_iter().enumerate() {
                let to2 =
                    |v: &[f64]| ndarray::ArrayView2::from_shape((n, n), v).map(|a| a.to_owned());
                pictures
                    .slice_mut(s![cell.arch, d, cell.seed, .., ..])
                    .assign(&to2(&o.picture).map_err(shape)?);
                norm_pictures
                    .slice_mut(s![cell.arch, d, cell.seed, .., ..])
                    .assign(&to2(&o.norm_picture).map_err(shape)?);
                if o.radial_spectrum.len() == radii {
                    spectra
                        .slice_mut(s![cell.arch, d, cell.seed, ..])
                        .assign(&ndarray::aview1(&o.radial_spectrum));
                }
                if let Some(c) = &o.cosine {
                    let m = ndarray::ArrayView2::from_shape((b, b), c.as_slice()).map_err(shape)?;
                    cosines.slice_mut(s![cell.arch, d, .., ..]).assign(&m);
                }
                by[cell.arch * nd + d][cell.seed] = Some(o);
            }
        }
        let mut results = Vec::new();
        let mut per_seed = Vec::new();
        for (a, arch) in p.archs.iter().enumerate() {
            for (d, &depth) in p.depths.iter().enumerate() {
                let outs: Vec<&DepthOutput> = by[a * nd + d].iter().flatten().collect();
                let mean_of =
                    |f: &dyn Fn(&DepthOutput) -> f64| MeanStd::of(outs.iter().map(|o| f(o)));
                let mean_vec = |f: &dyn Fn(&DepthOutput) -> &Vec<f64>| -> Vec<f64> {
                    let len = outs.iter().map(|o| f(o).len()).max().unwrap_or(0);
                    (0..len)
                        .map(|k| MeanStd::of(outs.iter().filter_map(|o| f(o).get(k).copied())).mean)
                        .collect()
                };
                for (s, o) in outs.iter().enumerate() {
                    per_seed.push(SeedRow {
                        arch: arch.to_string(),
                        depth,
                        seed: s,
                        r1: o.r1,
                        radial_slope: o.slope.map_or(f64::NAN, |f| f.slope),
                        mean_cosine: o.mean_cosine,
                        coherence: o.coherence,
                        snr: o.snr,
                    });
                }
                results.push(DepthSummary {
                    arch: arch.to_string(),
                    depth,
                    adjacent_correlation: mean_of(&|o| o.r1),
                    radial_slope: mean_of(&|o| o.slope.map_or(f64::NAN, |f| f.slope)),
                    radial_acf_mean: mean_vec(&|o| &o.radial_acf),
                    mean_cosine: mean_of(&|o| o.mean_cosine),
                    layer_names: outs
                        .first()
                        .map(|o| o.layer_names.clone())
                        .unwrap_or_default(),
                    layer_cosine_mean: mean_vec(&|o| &o.layer_cosine),
                    coherence: mean_of(&|o| o.coherence),
                    snr: mean_of(&|o| o.snr),
                    cosine_by_distance_mean: mean_vec(&|o| &o.cosine_by_distance),
                });
            }
        }
        // Calibration: white and brown-like fields through the same statistics.
        let (lo, hi) = self.radial_band();
        let mut rng = rand::rngs::StdRng::seed_from_u64(derive_seed(p.seed, "noise"));
        let references = [("white", 0.0), ("brown", 2.0)]
            .into_iter()
            .map(|(name, beta)| {
                let (adjacent_correlation, radial_slope) =
                    power_law_reference(n, beta, ns, (lo, hi), &mut rng);
                PlaneReference {
                    name: name.into(),
                    beta,
                    adjacent_correlation,
                    radial_slope,
                }
            })
            .collect();
        Ok(CorrelationResults {
            summary: CorrelationSummary {
                schema: SCHEMA.into(),
                study: NAME.into(),
                provenance,
                config: p.clone(),
                radial_band: [lo, hi],
                distance_edges: self.edges.clone(),
                references,
                results,
                images: None,
            },
            per_seed,
            axis: self.axis(),
            pictures,
            norm_pictures,
            radial_spectra: spectra,
            cosines,
            image_cosines: Array4::zeros((0, 0, 0, 0)),
        })
    }
}

fn shape(e: ndarray::ShapeError) -> StudyError {
    StudyError::Data {
        path: "cell".into(),
        reason: format!("a stored cell has the wrong size: {e}"),
    }
}

impl StudyResults for CorrelationResults {
    fn write(&self, dir: &std::path::Path) -> Result<()> {
        Ok(CorrelationResults::write(self, dir)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// candle's autograd (the oracle) computes the engine's Gram matrices,
    /// layer by layer, for several block kinds (BN included).
    #[test]
    fn per_example_grams_equal_the_oracles() {
        let p = CorrelationParams {
            archs: ["plain-bn", "resnet", "resnet1-bn"]
                .iter()
                .map(|s| s.parse().unwrap())
                .collect(),
            depths: vec![1, 3],
            width: 12,
            examples: 6,
            seeds: 1,
            ..CorrelationParams::quick()
        };
        let c = check(&p).unwrap();
        for arch in 0..3 {
            let cell = MlpCell { arch, seed: 0 };
            let dense = c.grams(&cell).unwrap();
            let net = Net::Mlp(Mlp::new(&c.digit_nets[arch].with_seed(c.net_seed(0))).unwrap());
            let task = DepthGrams {
                x: &c.x,
                y: &c.y,
                depths: &c.params.depths,
            };
            let slow =
                gradscope_engine::run(&net, Options::once(BnMode::PerSample).on_candle(), task)
                    .unwrap();
            for (d, (a, b)) in dense.iter().zip(&slow).enumerate() {
                let names = |g: &LayerGrams| g.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
                assert_eq!(names(a), names(b), "arch {arch} depth {d}");
                for ((name, ga), (_, gb)) in a.iter().zip(b) {
                    let scale = ga.iter().fold(0.0f64, |m, v| m.max(v.abs()));
                    let err = (ga - gb).iter().fold(0.0f64, |m, v| m.max(v.abs()));
                    assert!(
                        err <= 1e-9 * scale.max(1e-12),
                        "arch {arch} {name}: {err} of {scale}"
                    );
                }
            }
        }
    }
}

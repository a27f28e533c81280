//! The shattered study on images: ∂f/∂x of a scalar net along the straight
//! path between two images, x(t) = x₀ + t·(x₁ − x₀), t ∈ [0, 1] on N points.
//!
//! The 1-D study's grid becomes the path and its scalar df/dx the gradient
//! image g(t) ∈ R^{C·H·W}; r₁ and the ACF are pooled over pixels (each pixel
//! centred on its own mean), the power spectrum is the mean over pixels.
//! Balduzzi et al. 2017 (Sec. 3, Fig. 1) show the same contrast on CIFAR-10
//! nets: plain conv nets' gradients turn to noise with depth, resnets' do not.
//! A net here is a conv net of He et al. 2016a (depth 6n + 2, BN) or an MLP of
//! the grammar on the flattened image, each with one output, drawn afresh per
//! (arch, depth, seed) (a conv net's stages depend on its depth).

use gradscope_nets::{Net, Precision};
use gradscope_probe::{CaptureOpts, capture, scalar_grid};
use gradscope_spec::ModelArch;
use gradscope_stats::{
    Band, MeanStd, Spectrum, adjacent_correlation_pooled, autocorrelation_pooled, spectral_slope,
};
use ndarray::{Array1, Array2, Array4, Axis, s};

use super::{DepthResult, FaultRecord, ShatteredConfig, ShatteredParams};
use crate::image_nets::{ImageNet, check_image_part};
use crate::{Result, StudyError};
use gradscope_contract::shattered::{ImageArrays, ImageDepthSummary, ImageSeedRow, ImageSummary};

/// The validated image part: the two images and the nets' shapes.
#[derive(Clone, Debug)]
pub struct ImageSetup {
    /// x₀ and x₁, (2, C·H·W).
    pub(super) endpoints: Array2<f64>,
    /// (channels, height, width).
    pub(super) shape: Vec<usize>,
    pub(super) labels: Vec<u32>,
    pub(super) band: Band,
    pub(super) max_lag: usize,
    /// The plane of x₀, x₁ and a third image, with `image_plane_side` > 0.
    pub(super) plane: Option<super::plane::PlaneSetup>,
}

/// The net of `arch` at `depth` on images of `shape`, with one output
/// (what a cell of seed `seed` measures: see [`ShatteredConfig::net_seed`]).
pub fn net(
    p: &ShatteredParams,
    arch: ModelArch,
    depth: usize,
    shape: &[usize],
    seed: u64,
) -> Result<Net> {
    ImageNet {
        shape,
        outputs: 1,
        width: p.width,
        activation: Default::default(),
        weight_init: p.weight_init,
        bias_init: p.bias_init,
        precision: p.dtype,
        seed,
    }
    .build(arch, depth)
}

/// Check the image part of `p` (depths sorted in place) and load its two images.
pub(super) fn check(p: &mut ShatteredParams) -> Result<Option<ImageSetup>> {
    if !check_image_part(&p.image_archs, &mut p.image_depths)? {
        return Ok(None);
    }
    if !(16..=1 << 14).contains(&p.image_points) {
        return Err(StudyError::config(
            "image_points",
            format!("must be 16..=16384, got {}", p.image_points),
        ));
    }
    let [i, j] = p.image_pair[..] else {
        return Err(StudyError::config(
            "image_pair",
            format!("give two image indices, got {}", p.image_pair.len()),
        ));
    };
    if i == j {
        return Err(StudyError::config(
            "image_pair",
            format!("the path needs two different images, got {i} twice"),
        ));
    }
    let (_, test) = crate::data::load(&p.image_data)?;
    if i.max(j) >= test.len() {
        return Err(StudyError::config(
            "image_pair",
            format!(
                "indices must be below {} (the test set of {}), got {i}, {j}",
                test.len(),
                p.image_data
            ),
        ));
    }
    let shape = test.shape().to_vec();
    if shape.len() != 3 {
        return Err(StudyError::config(
            "image_data",
            format!("needs images (channels, height, width), got shape {shape:?}"),
        ));
    }
    for &arch in &p.image_archs {
        for &d in &p.image_depths {
            net(p, arch, d, &shape, 0)?;
        }
    }
    let band = Band::default_for(p.image_points);
    band.check(p.image_points / 2 + 1)
        .map_err(|e| StudyError::config("image_points", e.to_string()))?;
    let (x, labels) = test.matrix::<f64>(&[i, j]);
    if p.image_plane_side > 0 && !(1..=10_000).contains(&p.image_plane_seeds) {
        return Err(StudyError::config(
            "image_plane_seeds",
            format!(
                "must be 1..=10000 (more than seeds means all of them), got {}",
                p.image_plane_seeds
            ),
        ));
    }
    // "The first k seeds" of fewer seeds are all of them: `--seeds 2` needs
    // no `--image-plane-seeds` beside it.
    p.image_plane_seeds = p.image_plane_seeds.min(p.seeds);
    let plane = super::plane::check(p, &test, &x)?;
    Ok(Some(ImageSetup {
        endpoints: x,
        shape,
        labels,
        band,
        max_lag: (p.image_points / 4).min(32),
        plane,
    }))
}

impl ImageSetup {
    /// The N points of the path, one image a row: x₀ + t·(x₁ − x₀).
    pub fn path(&self, points: usize) -> (Array1<f64>, Array2<f64>) {
        let t = scalar_grid(points, 0.0, 1.0).column(0).to_owned();
        let (x0, x1) = (self.endpoints.row(0), self.endpoints.row(1));
        let x = Array2::from_shape_fn((points, x0.len()), |(i, k)| x0[k] + t[i] * (x1[k] - x0[k]));
        (t, x)
    }

    /// One image's shape (channels, height, width).
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The plane of three images, when the run has one.
    pub fn plane(&self) -> Option<&super::plane::PlaneSetup> {
        self.plane.as_ref()
    }

    /// Pixels per image.
    pub fn pixels(&self) -> usize {
        self.shape.iter().product()
    }

    /// Rough peak bytes of one net in flight over the path or the plane,
    /// whichever batch is larger: the hidden states a backward pass keeps,
    /// ~6 tensors of (N × 16 × H × W) per layer (stage 1's size bounds the
    /// later stages'), and the inputs and their gradients.
    pub fn working_bytes(&self, p: &ShatteredParams) -> f64 {
        let bytes = if p.dtype == Precision::F32 { 4.0 } else { 8.0 };
        let depth = p.image_depths.iter().copied().max().unwrap_or(0) as f64;
        let hw = (self.shape[1] * self.shape[2]) as f64;
        let width = (p.width as f64).max(16.0 * hw);
        let batch = p
            .image_points
            .max(self.plane.as_ref().map_or(0, |pl| pl.side().pow(2)));
        6.0 * depth * width * batch as f64 * bytes + (2 * batch * self.pixels()) as f64 * 8.0
    }

    /// Bytes of every image cell's outputs: seed 0's gradients and the
    /// spectra and ACFs of every seed, f64.
    pub fn output_bytes(&self, p: &ShatteredParams) -> f64 {
        let (na, nd, n) = (p.image_archs.len(), p.image_depths.len(), p.image_points);
        let plane = self.plane.as_ref().map_or(0, |pl| pl.output_bytes());
        (na * nd
            * ((n * self.pixels() + p.seeds * (n / 2 + 1 + self.max_lag + 1)) * 8
                + p.image_plane_seeds * plane)) as f64
    }
}

impl ShatteredConfig {
    fn image_setup(&self) -> &ImageSetup {
        self.images.as_ref().expect("image cells only with images")
    }

    /// The image part (the two images and their shape), with `image_archs`.
    pub fn images(&self) -> Option<&ImageSetup> {
        self.images.as_ref()
    }

    /// ∂f/∂x along the path for every depth of image arch `arch`, seed `seed`.
    pub(super) fn run_image_cell(&self, arch: usize, seed: usize) -> Result<Vec<DepthResult>> {
        let p = &self.params;
        let setup = self.image_setup();
        let (_, x) = setup.path(p.image_points);
        let plan = Spectrum::new(p.image_points)?;
        let opts = CaptureOpts {
            bn_mode: p.bn_mode,
            param_grads: false,
            ..Default::default()
        };
        p.image_depths
            .iter()
            .map(|&depth| {
                let net = net(
                    p,
                    p.image_archs[arch],
                    depth,
                    &setup.shape,
                    self.net_seed(seed),
                )?;
                // One batch: BN's statistics are those of the whole path (held
                // constant in the backward pass in per-sample mode), as the 1-D
                // study's are those of its grid.
                let cap = capture(&net, x.view(), &opts)?;
                let g = cap.input_grads;
                let out_finite = cap.output.iter().all(|v| v.is_finite());
                let layer_grad_norms: Vec<f64> = cap.layers.iter().map(|l| l.grad_norm).collect();
                let activation_norms: Vec<f64> =
                    cap.layers.iter().map(|l| l.activation_norm).collect();
                let faults = faults(&layer_grad_norms, &activation_norms, seed);
                let finite = out_finite && faults.is_empty() && g.iter().all(|v| v.is_finite());
                let (r1, slope, spectrum, acf) = if finite {
                    let mut spectrum = Array1::<f64>::zeros(p.image_points / 2 + 1);
                    for col in g.columns() {
                        spectrum += &plan.power(col)?;
                    }
                    spectrum /= g.ncols() as f64;
                    (
                        adjacent_correlation_pooled(g.view())?,
                        spectral_slope(spectrum.view(), setup.band).ok(),
                        spectrum.to_vec(),
                        autocorrelation_pooled(g.view(), setup.max_lag)?.to_vec(),
                    )
                } else {
                    (
                        f64::NAN,
                        None,
                        vec![f64::NAN; p.image_points / 2 + 1],
                        vec![f64::NAN; setup.max_lag + 1],
                    )
                };
                let plane = match &setup.plane {
                    Some(pl) if seed < p.image_plane_seeds => Some(pl.measure(&net, &opts)?),
                    _ => None,
                };
                let path_grad_norm = (g
                    .map_axis(Axis(1), |r| r.dot(&r))
                    .mean()
                    .unwrap_or(f64::NAN))
                .sqrt();
                Ok(DepthResult {
                    // Only seed 0's pictures are kept (CIFAR's are 3072 numbers a point).
                    input_grads: if seed == 0 {
                        g.iter().copied().collect()
                    } else {
                        Vec::new()
                    },
                    r1,
                    slope,
                    spectrum,
                    acf,
                    layer_grad_norms,
                    activation_norms,
                    faults,
                    path_grad_norm,
                    plane,
                })
            })
            .collect()
    }

    /// The image part of the summary and its arrays, from the image cells'
    /// outputs by (arch, seed).
    pub(super) fn summarise_images(
        &self,
        outputs: Vec<((usize, usize), Vec<DepthResult>)>,
    ) -> (ImageSummary, ImageArrays) {
        let p = &self.params;
        let setup = self.image_setup();
        let (na, nd, ns, n) = (
            p.image_archs.len(),
            p.image_depths.len(),
            p.seeds,
            p.image_points,
        );
        let pixels = setup.pixels();
        let mut gradients = Array4::<f64>::zeros((na, nd, n, pixels));
        let mut spectra = Array4::<f64>::zeros((na, nd, ns, n / 2 + 1));
        let mut acfs = Array4::<f64>::zeros((na, nd, ns, setup.max_lag + 1));
        let mut by: Vec<Vec<Option<DepthResult>>> = vec![vec![None; ns]; na * nd];
        for ((a, seed), per_depth) in outputs {
            for (d, r) in per_depth.into_iter().enumerate() {
                if seed == 0 {
                    gradients.slice_mut(s![a, d, .., ..]).assign(
                        &Array2::from_shape_vec((n, pixels), r.input_grads.clone())
                            .expect("N × pixels gradients"),
                    );
                }
                spectra
                    .slice_mut(s![a, d, seed, ..])
                    .assign(&Array1::from(r.spectrum.clone()));
                acfs.slice_mut(s![a, d, seed, ..])
                    .assign(&Array1::from(r.acf.clone()));
                by[a * nd + d][seed] = Some(r);
            }
        }
        let mut results = Vec::new();
        let mut per_seed = Vec::new();
        for (a, arch) in p.image_archs.iter().enumerate() {
            for (d, &depth) in p.image_depths.iter().enumerate() {
                let rs: Vec<&DepthResult> = by[a * nd + d]
                    .iter()
                    .map(|r| r.as_ref().expect("every image cell ran"))
                    .collect();
                for (seed, r) in rs.iter().enumerate() {
                    per_seed.push(ImageSeedRow {
                        arch: arch.to_string(),
                        depth,
                        seed,
                        adjacent_correlation: r.r1,
                        spectral_slope: r.slope.map_or(f64::NAN, |f| f.slope),
                        spectral_slope_r2: r.slope.map_or(f64::NAN, |f| f.r2),
                        input_grad_norm: r.path_grad_norm,
                    });
                }
                let layers = rs[0].layer_grad_norms.len();
                results.push(ImageDepthSummary {
                    arch: arch.to_string(),
                    depth,
                    adjacent_correlation: MeanStd::of(rs.iter().map(|r| r.r1)),
                    spectral_slope: MeanStd::of(
                        rs.iter().map(|r| r.slope.map_or(f64::NAN, |f| f.slope)),
                    ),
                    input_grad_norm: MeanStd::of(rs.iter().map(|r| r.path_grad_norm)),
                    layer_grad_norm_mean: (0..layers)
                        .map(|l| MeanStd::of(rs.iter().map(|r| r.layer_grad_norms[l])).mean)
                        .collect(),
                    faults: rs.iter().flat_map(|r| r.faults.iter().cloned()).collect(),
                });
            }
        }
        let (t, _) = setup.path(n);
        let (plane_summary, plane_arrays) = match &setup.plane {
            Some(pl) => {
                let (s, a) = self.summarise_plane(pl, &by);
                (Some(s), Some(a))
            }
            None => (None, None),
        };
        (
            ImageSummary {
                image_shape: setup.shape.clone(),
                pair: p.image_pair.clone(),
                labels: setup.labels.clone(),
                band: setup.band,
                max_lag: setup.max_lag,
                results,
                plane: plane_summary,
            },
            ImageArrays {
                per_seed,
                path: t,
                endpoints: setup.endpoints.clone(),
                gradients,
                power_spectra: spectra,
                autocorrelation: acfs,
                plane: plane_arrays,
            },
        )
    }
}

/// Hidden states whose activation (forward) or gradient (backward) norm is not finite.
fn faults(grad: &[f64], act: &[f64], seed: usize) -> Vec<FaultRecord> {
    let mut out = Vec::new();
    for (pass, norms) in [("forward", act), ("backward", grad)] {
        for (l, v) in norms.iter().enumerate() {
            if !v.is_finite() {
                out.push(FaultRecord {
                    seed,
                    pass: pass.into(),
                    layer: l,
                    name: gradscope_probe::hidden_name(l),
                    nan: v.is_nan(),
                });
            }
        }
    }
    out
}

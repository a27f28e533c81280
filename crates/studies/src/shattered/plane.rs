//! The shattered study over a plane of images: ∂f/∂x of the image nets on
//! the H × H grid of the square
//!
//! x(a, b) = (1 − a − b)·x₀ + a·x₁ + b·x₂ = x₀ + a·(x₁ − x₀) + b·(x₂ − x₀),
//! a, b ∈ {0, 1/(H − 1), …, 1},
//!
//! with x₀, x₁ the path's pair and x₂ the test image `image_plane_third`,
//! for the first `image_plane_seeds` seeds
//! (written as an affine combination so that the corners a, b ∈ {0, 1} are
//! x₀, x₁, x₂ exactly). Its pictures are the directional derivatives
//! ∂f/∂a = ∇ₓf·(x₁ − x₀) and ∂f/∂b = ∇ₓf·(x₂ − x₀) of the same scalar output
//! the path part differentiates, from the same request (one batch of all H²
//! grid points: in per-sample BN mode the statistics are the plane's, held
//! constant in the gradient), and their statistics those of the correlation
//! study's pictures ([`PictureStats`]): r₁ along both axes, the radially
//! averaged power spectrum and its slope, the radial autocorrelation.
//! Balduzzi et al. 2017 (Fig. 1) draw such pictures for nets on 2-D inputs.

use gradscope_nets::{Net, derive_seed};
use gradscope_probe::{CaptureOpts, capture};
use gradscope_stats::{LineFit, MeanStd, PictureStats, power_law_reference, radial_band};
use gradscope_train::Examples;
use ndarray::{Array1, Array2, Array5, Array6, ArrayView1, s};
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use super::{DepthResult, ShatteredConfig, ShatteredParams};
use crate::{Result, StudyError};
use gradscope_contract::correlation::PlaneReference;
use gradscope_contract::shattered::plane::PICTURES;
use gradscope_contract::shattered::{
    PictureSummary, PlaneArrays, PlaneDepthSummary, PlaneSeedRow, PlaneSummary,
};

/// Largest grid side H: H² images go through a net in one batch.
pub const MAX_SIDE: usize = 128;

/// The validated plane: its three corner images, side and band.
#[derive(Clone, Debug)]
pub struct PlaneSetup {
    /// x₀, x₁, x₂, (3, C·H·W).
    corners: Array2<f64>,
    third: usize,
    third_label: u32,
    side: usize,
    band: (usize, usize),
}

/// The plane of `p` (None when `image_plane_side` is 0), x₀ and x₁ the rows of `pair`.
pub(super) fn check(
    p: &ShatteredParams,
    test: &Examples,
    pair: &Array2<f64>,
) -> Result<Option<PlaneSetup>> {
    let side = p.image_plane_side;
    if side == 0 {
        return Ok(None);
    }
    if !(8..=MAX_SIDE).contains(&side) {
        return Err(StudyError::config(
            "image_plane_side",
            format!("must be 0 (no plane) or 8..={MAX_SIDE}, got {side}"),
        ));
    }
    let k = p.image_plane_third;
    if k >= test.len() {
        return Err(StudyError::config(
            "image_plane_third",
            format!(
                "must be below {} (the test set of {}), got {k}",
                test.len(),
                p.image_data
            ),
        ));
    }
    if p.image_pair.contains(&k) {
        return Err(StudyError::config(
            "image_plane_third",
            format!(
                "x₂ must be a third image, not one of the pair {:?}",
                p.image_pair
            ),
        ));
    }
    let (x2, labels) = test.matrix::<f64>(&[k]);
    let (x0, x1) = (pair.row(0), pair.row(1));
    let (da, db) = (&x1 - &x0, &x2.row(0) - &x0);
    // The plane needs two independent directions: |cos(da, db)| < 1.
    let cos = da.dot(&db) / (da.dot(&da) * db.dot(&db)).sqrt();
    if cos.is_nan() || cos.abs() >= 1.0 - 1e-9 {
        return Err(StudyError::config(
            "image_plane_third",
            format!(
                "image {k} spans no plane with the pair {:?} (x₂ − x₀ parallel to x₁ − x₀ or zero)",
                p.image_pair
            ),
        ));
    }
    let mut corners = Array2::zeros((3, x0.len()));
    corners.row_mut(0).assign(&x0);
    corners.row_mut(1).assign(&x1);
    corners.row_mut(2).assign(&x2.row(0));
    Ok(Some(PlaneSetup {
        corners,
        third: k,
        third_label: labels[0],
        side,
        band: radial_band(side),
    }))
}

/// The two pictures of one net and their statistics.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PlaneResult {
    /// ∂f/∂a then ∂f/∂b.
    pictures: Vec<PictureResult>,
}

/// One picture: its H × H values (row-major, b down the rows) and statistics.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct PictureResult {
    #[serde(with = "gradscope_stats::nan::vec")]
    values: Vec<f64>,
    #[serde(with = "gradscope_stats::nan")]
    r1: f64,
    slope: Option<LineFit>,
    #[serde(with = "gradscope_stats::nan::vec")]
    radial_spectrum: Vec<f64>,
    #[serde(with = "gradscope_stats::nan::vec")]
    radial_acf: Vec<f64>,
}

impl PlaneSetup {
    /// x₀, x₁, x₂, (3, C·H·W).
    pub fn corners(&self) -> &Array2<f64> {
        &self.corners
    }

    /// Grid points along each side.
    pub fn side(&self) -> usize {
        self.side
    }

    /// a (or b) at grid index i: i/(H − 1), exactly 0 and 1 at the ends.
    pub fn coordinate(&self, i: usize) -> f64 {
        i as f64 / (self.side - 1) as f64
    }

    /// The H² grid points, one image a row; row i·H + j is (a, b) = (j, i)/(H − 1).
    pub fn grid(&self) -> Array2<f64> {
        let h = self.side;
        let (x0, x1, x2) = (
            self.corners.row(0),
            self.corners.row(1),
            self.corners.row(2),
        );
        Array2::from_shape_fn((h * h, x0.len()), |(k, p)| {
            let (a, b) = (self.coordinate(k % h), self.coordinate(k / h));
            (1.0 - a - b) * x0[p] + a * x1[p] + b * x2[p]
        })
    }

    /// The directions of the pictures: x₁ − x₀ (∂f/∂a), x₂ − x₀ (∂f/∂b).
    pub fn directions(&self) -> [Array1<f64>; 2] {
        let x0 = self.corners.row(0);
        [&self.corners.row(1) - &x0, &self.corners.row(2) - &x0]
    }

    /// Bytes one net's pass over the plane adds to a cell's outputs (seeds below `image_plane_seeds`).
    pub(super) fn output_bytes(&self) -> usize {
        let h = self.side;
        PICTURES.len() * (h * h + 2 * (h / 2 + 1)) * 8
    }

    /// ∂f/∂a and ∂f/∂b of `net` over the grid (H × H each), and their
    /// statistics; NaN pictures where the net's output or gradient is not finite.
    pub(super) fn measure(&self, net: &Net, opts: &CaptureOpts) -> Result<PlaneResult> {
        let h = self.side;
        let cap = capture(net, self.grid().view(), opts)?;
        let finite = cap.output.iter().all(|v| v.is_finite())
            && cap.first_forward_fault().is_none()
            && cap.input_grads.iter().all(|v| v.is_finite());
        let pictures = self
            .directions()
            .iter()
            .map(|d| {
                let values = if finite {
                    cap.input_grads.dot(d)
                } else {
                    Array1::from_elem(h * h, f64::NAN)
                };
                let picture = Array2::from_shape_fn((h, h), |(i, j)| values[i * h + j]);
                let st = PictureStats::of(picture.view(), self.band)?;
                Ok(PictureResult {
                    values: values.to_vec(),
                    r1: st.r1,
                    slope: st.slope,
                    radial_spectrum: st.radial_spectrum.to_vec(),
                    radial_acf: st.radial_acf.to_vec(),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(PlaneResult { pictures })
    }
}

impl ShatteredConfig {
    /// The plane's summary and arrays from the image cells' results, by
    /// (arch · depths + depth) then seed.
    pub(super) fn summarise_plane(
        &self,
        plane: &PlaneSetup,
        by: &[Vec<Option<DepthResult>>],
    ) -> (PlaneSummary, PlaneArrays) {
        let p = &self.params;
        let (na, nd, ns, h) = (
            p.image_archs.len(),
            p.image_depths.len(),
            p.image_plane_seeds,
            plane.side,
        );
        let radii = h / 2 + 1;
        let mut pictures = Array6::<f64>::from_elem((na, nd, ns, 2, h, h), f64::NAN);
        let mut spectra = Array5::<f64>::from_elem((na, nd, ns, 2, radii), f64::NAN);
        let mut results = Vec::new();
        let mut per_seed = Vec::new();
        for (a, arch) in p.image_archs.iter().enumerate() {
            for (d, &depth) in p.image_depths.iter().enumerate() {
                let rs: Vec<&PlaneResult> = by[a * nd + d][..ns]
                    .iter()
                    .map(|r| {
                        r.as_ref()
                            .and_then(|r| r.plane.as_ref())
                            .expect("every image cell measured the plane")
                    })
                    .collect();
                for (seed, r) in rs.iter().enumerate() {
                    for (k, pic) in r.pictures.iter().enumerate() {
                        pictures
                            .slice_mut(s![a, d, seed, k, .., ..])
                            .iter_mut()
                            .zip(&pic.values)
                            .for_each(|(o, v)| *o = *v);
                        if pic.radial_spectrum.len() == radii {
                            spectra
                                .slice_mut(s![a, d, seed, k, ..])
                                .assign(&ArrayView1::from(&pic.radial_spectrum));
                        }
                        per_seed.push(PlaneSeedRow {
                            arch: arch.to_string(),
                            depth,
                            seed,
                            picture: PICTURES[k].into(),
                            adjacent_correlation: pic.r1,
                            radial_slope: pic.slope.map_or(f64::NAN, |f| f.slope),
                            radial_slope_r2: pic.slope.map_or(f64::NAN, |f| f.r2),
                        });
                    }
                }
                results.push(PlaneDepthSummary {
                    arch: arch.to_string(),
                    depth,
                    pictures: (0..PICTURES.len())
                        .map(|k| {
                            let pics: Vec<&PictureResult> =
                                rs.iter().map(|r| &r.pictures[k]).collect();
                            PictureSummary {
                                adjacent_correlation: MeanStd::of(pics.iter().map(|q| q.r1)),
                                radial_slope: MeanStd::of(
                                    pics.iter().map(|q| q.slope.map_or(f64::NAN, |f| f.slope)),
                                ),
                                radial_acf_mean: (0..radii)
                                    .map(|i| {
                                        MeanStd::of(
                                            pics.iter()
                                                .filter_map(|q| q.radial_acf.get(i).copied()),
                                        )
                                        .mean
                                    })
                                    .collect(),
                            }
                        })
                        .collect(),
                });
            }
        }
        // Calibration: white and brown fields of side H, as many as the plane's seeds.
        let mut rng = rand::rngs::StdRng::seed_from_u64(derive_seed(p.seed, "plane-noise"));
        let references = [("white", 0.0), ("brown", 2.0)]
            .into_iter()
            .map(|(name, beta)| {
                let (adjacent_correlation, radial_slope) =
                    power_law_reference(h, beta, ns, plane.band, &mut rng);
                PlaneReference {
                    name: name.into(),
                    beta,
                    adjacent_correlation,
                    radial_slope,
                }
            })
            .collect();
        (
            PlaneSummary {
                side: h,
                third: plane.third,
                seeds: ns,
                third_label: plane.third_label,
                radial_band: [plane.band.0, plane.band.1],
                references,
                results,
            },
            PlaneArrays {
                per_seed,
                corners: plane.corners.clone(),
                pictures,
                radial_spectra: spectra,
            },
        )
    }
}

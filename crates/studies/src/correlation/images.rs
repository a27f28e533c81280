//! The correlation study on images: how similar the per-example loss
//! gradients of a batch of real images are in conv nets of He et al. 2016a
//! (conv-plain and conv-resnet, BN, depth 6n + 2) or MLPs on the flattened
//! image, at initialisation.
//!
//! gᵢ = ∂ℓᵢ/∂θ with ℓᵢ = −log softmax(f(xᵢ))\[yᵢ\], over every parameter.
//! BN runs in per-sample mode (the batch's statistics, held constant in the
//! backward pass), so gᵢ is example i's own gradient. The engine returns the
//! Gram matrix ⟨gᵢ, gⱼ⟩ of each layer's parameters (a conv kernel's from
//! its per-image gradients, Σ_positions δ·colᵀ); a block's Gram is the sum
//! of its layers', the net's the sum of all, and cos(gᵢ, gⱼ) =
//! Gᵢⱼ/√(Gᵢᵢ·Gⱼⱼ) (Balduzzi et al. 2017's per-example view of shattering).

use gradscope_engine::{Engine, Options, Real, Task, Want};
use gradscope_nets::{BnMode, Net, derive_seed};
use gradscope_spec::ModelArch;
use gradscope_stats::{MeanStd, coherence, cosine_from_gram, mean_off_diagonal};
use gradscope_train::{cross_entropy_gradient, epoch_batches};
use ndarray::{Array2, Array4, ArrayView2, s};
use serde::{Deserialize, Serialize};

use super::{CorrelationConfig, CorrelationParams};
use crate::Result;
use crate::image_nets::{ImageNet, check_image_part, training_images};
use gradscope_contract::correlation::{ImageDepthSummary, ImageSeed, ImageSummary};

/// The validated image part: the batch, sorted by class, and its shape.
#[derive(Clone, Debug)]
pub struct ImageSetup {
    /// (channels, height, width).
    shape: Vec<usize>,
    classes: usize,
    /// The B images, one a row.
    x: Array2<f64>,
    /// Their labels, ascending.
    y: Vec<u32>,
}

impl ImageSetup {
    /// The images (one a row) and their labels, sorted by class.
    pub fn batch(&self) -> (&Array2<f64>, &[u32]) {
        (&self.x, &self.y)
    }
}

/// The net of `arch` at `depth` on images of `shape` with `classes` outputs,
/// its weights drawn from `seed`.
pub fn net(
    p: &CorrelationParams,
    arch: ModelArch,
    depth: usize,
    shape: &[usize],
    classes: usize,
    seed: u64,
) -> Result<Net> {
    ImageNet {
        shape,
        outputs: classes,
        width: p.width,
        activation: Default::default(),
        weight_init: p.weight_init,
        bias_init: p.bias_init,
        precision: p.dtype,
        seed,
    }
    .build(arch, depth)
}

/// Check the image part of `p` (depths sorted in place) and draw the batch.
pub(super) fn check(p: &mut CorrelationParams) -> Result<Option<ImageSetup>> {
    if !check_image_part(&p.image_archs, &mut p.image_depths)? {
        return Ok(None);
    }
    let (train, shape) = training_images(&p.image_data, p.image_batch, 1024)?;
    for &arch in &p.image_archs {
        for &d in &p.image_depths {
            net(p, arch, d, &shape, train.classes(), 0)?;
        }
    }
    let pick = &epoch_batches(
        train.len(),
        p.image_batch,
        derive_seed(p.seed, "image-batch"),
    )[0];
    // Sorted by class, so that class structure shows as blocks in the matrices.
    let (_, labels) = train.matrix::<f64>(pick);
    let mut order: Vec<usize> = (0..pick.len()).collect();
    order.sort_by_key(|&k| (labels[k], pick[k]));
    let sorted: Vec<usize> = order.iter().map(|&k| pick[k]).collect();
    let (x, y) = train.matrix::<f64>(&sorted);
    Ok(Some(ImageSetup {
        classes: train.classes(),
        shape,
        x,
        y,
    }))
}

/// (layer name, B × B Gram matrix of the layer's per-example gradients),
/// in state-dict order, of the cross-entropy of each example.
pub fn per_example_grams(
    net: &Net,
    x: ArrayView2<f64>,
    y: &[u32],
    options: Options,
) -> Result<Vec<(String, Array2<f64>)>> {
    Ok(gradscope_engine::run(net, options, Grams { x, y })?)
}

struct Grams<'a> {
    x: ArrayView2<'a, f64>,
    y: &'a [u32],
}

impl Task for Grams<'_> {
    type Output = Vec<(String, Array2<f64>)>;
    fn run<T: Real>(self, engine: &mut dyn Engine<T>) -> gradscope_engine::Result<Self::Output> {
        let depth = engine.depth();
        let fwd = engine.forward(self.x.mapv(T::of).view(), true)?;
        // Row i: ∂ℓᵢ/∂zᵢ = softmax(zᵢ) − e_{yᵢ}, example i's own loss.
        let mut d = engine.output(&fwd, depth)?;
        cross_entropy_gradient(&mut d, self.y);
        let want = Want {
            gram: true,
            ..Want::default()
        };
        Ok(engine.backward(&fwd, depth, Some(d.view()), want)?.gram)
    }
}

/// The block a layer belongs to: `layer1.0` of a conv net's
/// `layer1.0.conv1`, `layers.3` of an MLP's `layers.3.fc`; `stem` before the
/// first block and `head` after the last.
fn block_of(name: &str, seen_block: bool) -> String {
    let mut parts = name.split('.');
    let first = parts.next().unwrap_or("");
    let is_block = first == "layers"
        || first
            .strip_prefix("layer")
            .is_some_and(|s| !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit()));
    match parts.next() {
        Some(second) if is_block => format!("{first}.{second}"),
        _ if seen_block => "head".into(),
        _ => "stem".into(),
    }
}

/// The per-layer Grams summed per block, in order.
pub fn block_grams(layers: &[(String, Array2<f64>)]) -> Vec<(String, Array2<f64>)> {
    let mut out: Vec<(String, Array2<f64>)> = Vec::new();
    for (name, g) in layers {
        let seen = out.iter().any(|(b, _)| b != "stem");
        let b = block_of(name, seen);
        match out.last_mut() {
            Some((last, acc)) if *last == b => *acc += g,
            _ => out.push((b, g.clone())),
        }
    }
    out
}

/// Mean of the off-diagonal cosines over pairs of the same class (`same`)
/// or of different classes.
pub fn class_mean(cos: ArrayView2<f64>, y: &[u32], same: bool) -> f64 {
    let (mut sum, mut n) = (0.0, 0usize);
    for i in 0..y.len() {
        for j in 0..y.len() {
            if i != j && (y[i] == y[j]) == same && cos[[i, j]].is_finite() {
                sum += cos[[i, j]];
                n += 1;
            }
        }
    }
    if n == 0 { f64::NAN } else { sum / n as f64 }
}

/// What one image net gives.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ImageOutput {
    seed: ImageSeed,
    block_names: Vec<String>,
    /// The whole-net cosine matrix, for seed 0 only.
    cosine: Option<Vec<f32>>,
}

impl CorrelationConfig {
    fn image_setup(&self) -> &ImageSetup {
        self.images.as_ref().expect("image cells only with images")
    }

    /// The image part's setup, with `image_archs`.
    pub fn images(&self) -> Option<&ImageSetup> {
        self.images.as_ref()
    }

    /// The net of the image cell (`arch`, `depth`, seed index `seed`).
    pub fn image_net(&self, arch: ModelArch, depth: usize, seed: usize) -> Result<Net> {
        let setup = self.image_setup();
        net(
            &self.params,
            arch,
            depth,
            &setup.shape,
            setup.classes,
            self.net_seed_of("images", seed),
        )
    }

    /// One image net's cosines.
    pub(super) fn image_cell(&self, arch: usize, depth: usize, seed: usize) -> Result<ImageOutput> {
        let p = &self.params;
        let net = self.image_net(p.image_archs[arch], p.image_depths[depth], seed)?;
        let (x, y) = self.image_setup().batch();
        let layers = per_example_grams(&net, x.view(), y, Options::once(BnMode::PerSample))?;
        let b = y.len();
        let total = layers
            .iter()
            .fold(Array2::<f64>::zeros((b, b)), |acc, (_, g)| acc + g);
        let cos = cosine_from_gram(total.view())?;
        let blocks = block_grams(&layers);
        let block_cosine = blocks
            .iter()
            .map(|(_, g)| cosine_from_gram(g.view()).and_then(|c| mean_off_diagonal(c.view())))
            .collect::<std::result::Result<Vec<f64>, _>>()?;
        Ok(ImageOutput {
            seed: ImageSeed {
                mean_cosine: mean_off_diagonal(cos.view())?,
                same_class: class_mean(cos.view(), y, true),
                different_class: class_mean(cos.view(), y, false),
                coherence: coherence(total.view())?,
                block_cosine,
            },
            block_names: blocks.into_iter().map(|(n, _)| n).collect(),
            cosine: (seed == 0).then(|| cos.iter().map(|&v| v as f32).collect()),
        })
    }

    /// The image part of the summary and the seed-0 cosine matrices, from
    /// the image cells' outputs by (arch index, depth index), seeds in order.
    pub(super) fn summarise_images(
        &self,
        groups: Vec<((usize, usize), Vec<ImageOutput>)>,
    ) -> Result<(ImageSummary, Array4<f32>)> {
        let p = &self.params;
        let setup = self.image_setup();
        let b = setup.y.len();
        let (na, nd) = (p.image_archs.len(), p.image_depths.len());
        let mut cosines = Array4::<f32>::from_elem((na, nd, b, b), f32::NAN);
        let mut results = Vec::new();
        for ((a, d), outs) in groups {
            if let Some(c) = outs.first().and_then(|o| o.cosine.as_ref()) {
                let m = ArrayView2::from_shape((b, b), c.as_slice()).map_err(super::shape)?;
                cosines.slice_mut(s![a, d, .., ..]).assign(&m);
            }
            let of = |f: &dyn Fn(&ImageSeed) -> f64| MeanStd::of(outs.iter().map(|o| f(&o.seed)));
            let block_names = outs
                .first()
                .map(|o| o.block_names.clone())
                .unwrap_or_default();
            results.push(ImageDepthSummary {
                arch: p.image_archs[a].to_string(),
                depth: p.image_depths[d],
                mean_cosine: of(&|s| s.mean_cosine),
                same_class: of(&|s| s.same_class),
                different_class: of(&|s| s.different_class),
                coherence: of(&|s| s.coherence),
                block_cosine: (0..block_names.len())
                    .map(|k| of(&|s| s.block_cosine.get(k).copied().unwrap_or(f64::NAN)))
                    .collect(),
                block_names,
                per_seed: outs.into_iter().map(|o| o.seed).collect(),
            });
        }
        Ok((
            ImageSummary {
                image_shape: setup.shape.clone(),
                classes: setup.classes,
                labels: setup.y.clone(),
                results,
            },
            cosines,
        ))
    }
}

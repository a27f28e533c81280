//! The norms study on images: per-block ‖∂L/∂h_l‖ and per-layer ‖∂L/∂W‖ of
//! conv nets (He et al. 2016a: conv-plain and conv-resnet, BN, depth 6n + 2)
//! or MLPs on the flattened image, at initialisation, for the mean
//! cross-entropy L = (1/B)·Σᵢ −log softmax(f(xᵢ))\[yᵢ\] of a batch of real
//! images and their labels. BN normalises with the batch's statistics and
//! the gradient goes through them (training mode, `BnMode::Full`), so ∂L/∂W
//! is the gradient a first SGD step would take.
//!
//! The per-block growth towards the input is e^{−slope} of the line fitted to
//! the seed mean of ln ‖∂L/∂h_l‖ on l = 1 … blocks (the stem's output h₀ left
//! out: the stem is a single conv with its own fan-in).

use gradscope_engine::{Engine, Options, Real, Request, Task, Want};
use gradscope_nets::{
    Activation, BnMode, ConvNetParams, Model, Net, NetParams, Precision, WeightInit, derive_seed,
};
use gradscope_spec::ModelArch;
use gradscope_stats::{Confidence, FitInput, FitScale, MeanStd};
use gradscope_train::{cross_entropy_gradient, epoch_batches};
use ndarray::{Array2, ArrayView2};

use super::{CellOutput, FaultRow, NormsConfig, NormsParams};
use crate::image_nets::{ImageNet, check_image_part, training_images};
use crate::{Result, StudyError};
use gradscope_contract::norms::{GrowthFit, ImageDepthSummary, ImageSummary};

/// The validated image part: each seed's batch and the nets' shapes.
#[derive(Clone, Debug)]
pub struct ImageSetup {
    /// (channels, height, width).
    shape: Vec<usize>,
    classes: usize,
    /// Each seed's images (one a row) and labels.
    batches: Vec<(Array2<f64>, Vec<u32>)>,
}

impl ImageSetup {
    /// One image's shape (channels, height, width).
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Rough peak bytes of one net in flight: ~8 saved tensors of
    /// (batch × 16 × H × W) per weighted layer (stage 1's size bounds the
    /// later stages'), or of (batch × width) for an MLP.
    pub fn working_bytes(&self, p: &NormsParams) -> f64 {
        let bytes = if p.dtype == Precision::F32 { 4.0 } else { 8.0 };
        let depth = p.image_depths.iter().copied().max().unwrap_or(0) as f64;
        let hw = (self.shape[1] * self.shape[2]) as f64;
        let width = (p.width as f64).max(16.0 * hw);
        8.0 * (depth + 2.0) * width * p.image_batch as f64 * bytes
    }
}

/// The net of `arch` at `depth` on images of `shape` with `classes` outputs,
/// its weights drawn from `seed` (He init; an MLP's activation ReLU).
pub fn net(
    p: &NormsParams,
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
        activation: Activation::Relu,
        weight_init: WeightInit::He,
        bias_init: p.bias_init,
        precision: p.dtype,
        seed,
    }
    .build(arch, depth)
}

/// Check the image part of `p` (depths sorted in place) and draw each seed's batch.
pub(super) fn check(p: &mut NormsParams) -> Result<Option<ImageSetup>> {
    if !check_image_part(&p.image_archs, &mut p.image_depths)? {
        return Ok(None);
    }
    let (train, shape) = training_images(&p.image_data, p.image_batch, 8192)?;
    for &arch in &p.image_archs {
        for &d in &p.image_depths {
            // The spec alone: building every net here would draw every weight.
            net_spec_check(p, arch, d, &shape, train.classes())?;
        }
    }
    let batches = (0..p.seeds)
        .map(|s| {
            let idx = &epoch_batches(
                train.len(),
                p.image_batch,
                derive_seed(p.seed, &format!("image-batch-seed{s}")),
            )[0];
            train.matrix::<f64>(idx)
        })
        .collect();
    Ok(Some(ImageSetup {
        classes: train.classes(),
        shape,
        batches,
    }))
}

/// [`net`]'s checks without building the net.
fn net_spec_check(
    p: &NormsParams,
    arch: ModelArch,
    depth: usize,
    shape: &[usize],
    classes: usize,
) -> Result<()> {
    let bad = |e: gradscope_spec::SpecError| {
        StudyError::config("image_depths", format!("{arch} at depth {depth}: {e}"))
    };
    match arch {
        ModelArch::Conv(c) => {
            if shape[1] != shape[2] {
                return Err(StudyError::config(
                    "image_data",
                    format!("{arch} needs square images; the data's are {shape:?}"),
                ));
            }
            ConvNetParams {
                arch: c,
                depth,
                in_channels: shape[0],
                image_size: shape[1],
                classes,
                precision: p.dtype,
                ..Default::default()
            }
            .check()
            .map_err(bad)?;
        }
        ModelArch::Mlp(a) => {
            NetParams {
                arch: a,
                depth,
                width: p.width,
                input_dim: shape.iter().product(),
                output_dim: classes,
                activation: Activation::Relu,
                weight_init: WeightInit::He,
                bias_init: p.bias_init,
                precision: p.dtype,
                seed: 0,
            }
            .check()
            .map_err(bad)?;
        }
    }
    Ok(())
}

/// One backward pass of the mean cross-entropy: the loss, ‖∂L/∂h_l‖ for
/// l = 0 … blocks, and ∂L/∂θ of every parameter tensor (state-dict order).
#[derive(Clone, Debug)]
pub struct ImageGradients {
    /// L, the mean cross-entropy over the batch.
    pub loss: f64,
    /// ‖∂L/∂h_l‖_F over the batch.
    pub hidden_norms: Vec<f64>,
    /// (name, ∂L/∂θ flattened) per parameter tensor.
    pub params: Vec<(String, Vec<f64>)>,
}

/// L and its gradients for `net` on images `x` (one a row) with labels `y`,
/// BN on the batch's statistics with the gradient through them; on the
/// engine's kernels, or on candle's autograd with `Request::Candle`.
pub fn image_gradients(
    net: &Net,
    x: ArrayView2<f64>,
    y: &[u32],
    request: Request,
) -> Result<ImageGradients> {
    let opts = Options {
        request,
        ..Options::once(BnMode::Full)
    };
    Ok(gradscope_engine::run(net, opts, CrossEntropy { x, y })?)
}

struct CrossEntropy<'a> {
    x: ArrayView2<'a, f64>,
    y: &'a [u32],
}

impl Task for CrossEntropy<'_> {
    type Output = ImageGradients;
    fn run<T: Real>(self, engine: &mut dyn Engine<T>) -> gradscope_engine::Result<ImageGradients> {
        let x = self.x.mapv(T::of);
        let depth = engine.depth();
        let fwd = engine.forward(x.view(), true)?;
        let mut g = engine.output(&fwd, depth)?;
        let losses = cross_entropy_gradient(&mut g, self.y);
        let inv_n = T::one() / T::of(self.y.len() as f64);
        g.mapv_inplace(|v| v * inv_n);
        let grads = engine.backward(
            &fwd,
            depth,
            Some(g.view()),
            Want {
                hidden: false,
                params: true,
                gram: false,
            },
        )?;
        Ok(ImageGradients {
            loss: losses.iter().sum::<f64>() / losses.len() as f64,
            hidden_norms: grads.hidden_norms.clone(),
            params: grads
                .params
                .into_iter()
                .map(|(n, v)| (n, v.into_iter().map(Real::f64).collect()))
                .collect(),
        })
    }
}

/// The weighted layers of `net` (parameters of rank ≥ 2: conv kernels and
/// linear maps; BN's γ, β and biases are vectors) in state-dict order, with
/// the block each belongs to: 0 the stem, 1 … blocks, blocks + 1 the head.
pub fn weighted_layers(net: &Net) -> Vec<(String, usize)> {
    use gradscope_nets::BlockNet;
    let blocks = net.num_blocks();
    let mut out = Vec::new();
    let (mut block, mut last) = (0, String::new());
    for (name, v) in net.parameters() {
        if v.rank() < 2 {
            continue;
        }
        let b = match block_prefix(&name) {
            Some(pre) => {
                if pre != last {
                    block += 1;
                    last = pre;
                }
                block
            }
            None if block == 0 => 0,
            None => blocks + 1,
        };
        out.push((name, b));
    }
    out
}

/// `layer1.0` of a conv net's `layer1.0.conv1.weight`, `layers.3` of an MLP's
/// `layers.3.fc.weight`; `None` for the stem and the head.
fn block_prefix(name: &str) -> Option<String> {
    let mut parts = name.split('.');
    let first = parts.next()?;
    let is_block = first == "layers"
        || first
            .strip_prefix("layer")
            .is_some_and(|s| !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit()));
    let second = parts.next()?;
    is_block.then(|| format!("{first}.{second}"))
}

impl NormsConfig {
    fn image_setup(&self) -> &ImageSetup {
        self.images.as_ref().expect("image cells only with images")
    }

    /// The image part's setup, with `image_archs`.
    pub fn images(&self) -> Option<&ImageSetup> {
        self.images.as_ref()
    }

    /// The net, images and labels of the image cell (`arch`, `depth`, seed
    /// index `seed`): what the study measures, for tests to measure again.
    pub fn image_inputs(
        &self,
        arch: ModelArch,
        depth: usize,
        seed: usize,
    ) -> Result<(Net, Array2<f64>, Vec<u32>)> {
        let setup = self.image_setup();
        let net = net(
            &self.params,
            arch,
            depth,
            &setup.shape,
            setup.classes,
            self.net_seed("images", seed),
        )?;
        let (x, y) = setup.batches[seed].clone();
        Ok((net, x, y))
    }

    /// ‖∂L/∂h_l‖ and ‖∂L/∂W‖ of one image net.
    pub(super) fn image_cell(
        &self,
        arch: ModelArch,
        depth: usize,
        seed: usize,
    ) -> Result<CellOutput> {
        let (net, x, y) = self.image_inputs(arch, depth, seed)?;
        let g = image_gradients(&net, x.view(), &y, Request::Auto)?;
        let norms: std::collections::HashMap<&str, f64> = g
            .params
            .iter()
            .map(|(n, v)| (n.as_str(), v.iter().map(|a| a * a).sum::<f64>().sqrt()))
            .collect();
        let weights = weighted_layers(&net)
            .into_iter()
            .map(|(name, b)| {
                let v = norms.get(name.as_str()).copied().unwrap_or(f64::NAN);
                (name, b, v)
            })
            .collect();
        let fault = if !g.loss.is_finite() {
            Some((
                "forward".to_string(),
                0,
                "loss".to_string(),
                g.loss.is_nan(),
            ))
        } else {
            g.hidden_norms
                .iter()
                .enumerate()
                .rev()
                .find(|(_, v)| !v.is_finite())
                .map(|(l, v)| {
                    (
                        "backward".to_string(),
                        l,
                        gradscope_probe::hidden_name(l),
                        v.is_nan(),
                    )
                })
        };
        Ok(CellOutput::Images {
            loss: g.loss,
            grad: g.hidden_norms,
            weights,
            fault,
        })
    }

    /// The image part of the summary from the image cells' outputs, by
    /// (arch index, depth index), seeds in order.
    pub(super) fn summarise_images(
        &self,
        groups: Vec<((usize, usize), Vec<CellOutput>)>,
    ) -> ImageSummary {
        let p = &self.params;
        let setup = self.image_setup();
        let mut results = Vec::new();
        for ((a, d), outs) in groups {
            let mut loss = vec![];
            let mut grads: Vec<Vec<f64>> = vec![];
            let mut weights: Vec<Vec<f64>> = vec![];
            let mut names: Vec<(String, usize)> = vec![];
            let mut faults = vec![];
            for (seed, o) in outs.into_iter().enumerate() {
                if let CellOutput::Images {
                    loss: l,
                    grad,
                    weights: w,
                    fault,
                } = o
                {
                    loss.push(l);
                    grads.push(grad);
                    if names.is_empty() {
                        names = w.iter().map(|(n, b, _)| (n.clone(), *b)).collect();
                    }
                    weights.push(w.into_iter().map(|(_, _, v)| v).collect());
                    if let Some((pass, layer, name, nan)) = fault {
                        faults.push(FaultRow {
                            seed,
                            pass,
                            layer,
                            name,
                            nan,
                        });
                    }
                }
            }
            let column = |rows: &[Vec<f64>], k: usize| {
                MeanStd::of(rows.iter().map(|r| r.get(k).copied().unwrap_or(f64::NAN)))
            };
            let hidden = grads.first().map_or(0, Vec::len);
            results.push(ImageDepthSummary {
                arch: p.image_archs[a].to_string(),
                depth: p.image_depths[d],
                loss: MeanStd::of(loss),
                grad_norm: (0..hidden).map(|l| column(&grads, l)).collect(),
                growth: growth_fit(&grads),
                grad_norm_per_seed: grads,
                weight_grad_norm: (0..names.len()).map(|k| column(&weights, k)).collect(),
                weight_names: names.iter().map(|(n, _)| n.clone()).collect(),
                weight_blocks: names.iter().map(|(_, b)| *b).collect(),
                weight_grad_norm_per_seed: weights,
                faults,
            });
        }
        ImageSummary {
            image_shape: setup.shape.clone(),
            classes: setup.classes,
            results,
        }
    }
}

/// The per-block growth towards the input (see [`GrowthFit`]) from each
/// seed's ‖∂L/∂h_l‖, l = 0 … blocks: the line of the seed mean of
/// ln ‖∂L/∂h_l‖ on l = 1 … blocks; NaN with fewer than three blocks.
pub fn growth_fit(per_seed: &[Vec<f64>]) -> GrowthFit {
    let hidden = per_seed.first().map_or(0, Vec::len);
    let x: Vec<f64> = (1..hidden).map(|l| l as f64).collect();
    let y: Vec<f64> = (1..hidden)
        .map(|l| MeanStd::of(per_seed.iter().map(|g| g[l].ln())).mean)
        .collect();
    match FitInput::new(&x, &y).fit_line(FitScale::Linear, Confidence::P95) {
        Ok(f) => GrowthFit {
            growth: (-f.line.slope).exp(),
            lo: (-f.line.slope_hi).exp(),
            hi: (-f.line.slope_lo).exp(),
            r2: f.line.r2,
            points: x.len() - f.excluded.len(),
        },
        Err(_) => GrowthFit {
            growth: f64::NAN,
            lo: f64::NAN,
            hi: f64::NAN,
            r2: f64::NAN,
            points: 0,
        },
    }
}

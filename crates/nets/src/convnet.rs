//! Convolutional nets for small images in the style of He et al. 2016a
//! ("Deep Residual Learning for Image Recognition", CVPR, §4.2): a 3×3 stem,
//! three stages of n blocks at widths 16, 32, 64 (stride 2 between stages),
//! global average pooling and a linear classifier; 6n + 2 layers with basic
//! blocks (ResNet-20/32/44/56/110), 9n + 2 with bottleneck blocks (ResNet-164).
//!
//! Blocks are post-activation as in the original paper: basic
//! y = φ(BN(conv(φ(BN(conv(x))))) + s(x)); bottleneck 1×1 → 3×3 → 1×1 with
//! 4× expansion. The plain nets are the same without s(x). When a stage
//! changes the shape, the shortcut s is option A (identity on every other
//! pixel, extra channels zero-padded: no parameters) or option B (1×1
//! convolution and BN).

use candle_core::{DType, Device, Tensor, Var};

use crate::activation::relu;
use crate::{
    BatchNorm, BnMode, Conv2d, ConvBlock, ConvNetSpec, Linear, Model, PrecisionExt, Result,
    Shortcut, tensor_rng,
};

/// The shortcut of a residual conv block.
#[derive(Clone, Debug)]
pub enum Downsample {
    /// Identity: same shape.
    Identity,
    /// Option A: every `stride`-th pixel, `extra` zero channels padded
    /// (half before the input's channels, the rest after; no parameters).
    Pad {
        /// Subsampling step in both directions.
        stride: usize,
        /// Zero channels added.
        extra: usize,
    },
    /// Option B: 1×1 convolution (with the stride) and BN.
    Project(Conv2d, BatchNorm),
}

/// One block of a conv net: convolutions each followed by BN (and ReLU
/// between them), then — for a residual block — the shortcut added and a
/// ReLU; a plain block ends in the ReLU alone.
#[derive(Clone, Debug)]
pub struct ConvUnit {
    convs: Vec<(Conv2d, BatchNorm)>,
    shortcut: Option<Downsample>,
}

impl ConvUnit {
    /// The (convolution, BN) pairs, input to output.
    pub fn convs(&self) -> &[(Conv2d, BatchNorm)] {
        &self.convs
    }

    /// The shortcut; `None` in a plain block.
    pub fn shortcut(&self) -> Option<&Downsample> {
        self.shortcut.as_ref()
    }

    fn forward(&self, x: &Tensor, mode: BnMode) -> Result<Tensor> {
        let h = self.main_path(x, mode)?;
        Ok(match &self.shortcut {
            Some(s) => relu(&(h + shortcut(s, x, mode)?)?)?,
            None => relu(&h)?,
        })
    }

    /// The convolutions up to the last BN, before the addition and ReLU.
    fn main_path(&self, x: &Tensor, mode: BnMode) -> Result<Tensor> {
        let mut h = x.clone();
        let last = self.convs.len() - 1;
        for (i, (conv, bn)) in self.convs.iter().enumerate() {
            h = bn.forward(&conv.forward(&h)?, mode)?;
            if i < last {
                h = relu(&h)?;
            }
        }
        Ok(h)
    }

    fn keeps_shape(&self) -> bool {
        let (first, last) = (&self.convs[0].0, &self.convs[self.convs.len() - 1].0);
        self.convs.iter().all(|(c, _)| c.stride() == 1)
            && first.weight().dim(1).ok() == last.weight().dim(0).ok()
    }
}

fn shortcut(s: &Downsample, x: &Tensor, mode: BnMode) -> Result<Tensor> {
    Ok(match s {
        Downsample::Identity => x.clone(),
        Downsample::Pad { stride, extra } => {
            let sub = subsample(x, *stride)?;
            let left = extra / 2;
            sub.pad_with_zeros(1, left, extra - left)?
        }
        Downsample::Project(conv, bn) => bn.forward(&conv.forward(x)?, mode)?,
    })
}

/// Every `stride`-th pixel from the first, x[:, :, ::s, ::s].
fn subsample(x: &Tensor, stride: usize) -> Result<Tensor> {
    if stride == 1 {
        return Ok(x.clone());
    }
    let (_, _, h, w) = x.dims4()?;
    let idx = |n: usize| {
        Tensor::from_vec(
            (0..n).step_by(stride).map(|i| i as u32).collect::<Vec<_>>(),
            n.div_ceil(stride),
            x.device(),
        )
    };
    Ok(x.index_select(&idx(h)?, 2)?.index_select(&idx(w)?, 3)?)
}

/// A plain or residual convolutional net for classification.
#[derive(Clone, Debug)]
pub struct ConvNet {
    spec: ConvNetSpec,
    stem: (Conv2d, BatchNorm),
    /// Stages of blocks, named `layer{1,2,3}.{b}`.
    stages: Vec<Vec<ConvUnit>>,
    fc: Linear,
}

impl ConvNet {
    /// Build the net from a validated spec, weights drawn from its seed.
    pub fn new(spec: &ConvNetSpec) -> Result<Self> {
        let init = ConvInit {
            spec,
            dtype: spec.precision.dtype(),
        };
        let n = spec.blocks_per_stage().expect("checked");
        let expansion = if spec.arch.block == ConvBlock::Bottleneck {
            4
        } else {
            1
        };
        let stem = (
            init.conv("conv1", spec.in_channels, spec.widths[0], 3, 1)?,
            init.bn(spec.widths[0])?,
        );
        let mut c_in = spec.widths[0];
        let mut stages = Vec::new();
        for (s, &w) in spec.widths.iter().enumerate() {
            let mut blocks = Vec::new();
            for b in 0..n {
                let p = format!("layer{}.{b}", s + 1);
                let stride = if s > 0 && b == 0 { 2 } else { 1 };
                let c_out = w * expansion;
                let convs = match spec.arch.block {
                    ConvBlock::Basic => vec![
                        (
                            init.conv(&format!("{p}.conv1"), c_in, w, 3, stride)?,
                            init.bn(w)?,
                        ),
                        (init.conv(&format!("{p}.conv2"), w, w, 3, 1)?, init.bn(w)?),
                    ],
                    ConvBlock::Bottleneck => vec![
                        (
                            init.conv(&format!("{p}.conv1"), c_in, w, 1, 1)?,
                            init.bn(w)?,
                        ),
                        (
                            init.conv(&format!("{p}.conv2"), w, w, 3, stride)?,
                            init.bn(w)?,
                        ),
                        (
                            init.conv(&format!("{p}.conv3"), w, c_out, 1, 1)?,
                            init.bn(c_out)?,
                        ),
                    ],
                };
                let shortcut = spec.arch.residual.then(|| -> Result<Downsample> {
                    Ok(if stride == 1 && c_in == c_out {
                        Downsample::Identity
                    } else {
                        match spec.arch.shortcut {
                            Shortcut::A if c_out >= c_in => Downsample::Pad {
                                stride,
                                extra: c_out - c_in,
                            },
                            _ => Downsample::Project(
                                init.conv(&format!("{p}.downsample.0"), c_in, c_out, 1, stride)?,
                                init.bn(c_out)?,
                            ),
                        }
                    })
                });
                blocks.push(ConvUnit {
                    convs,
                    shortcut: shortcut.transpose()?,
                });
                c_in = c_out;
            }
            stages.push(blocks);
        }
        let fc = init.linear("fc", c_in, spec.classes)?;
        Ok(ConvNet {
            spec: spec.clone(),
            stem,
            stages,
            fc,
        })
    }

    /// The spec the net was built from.
    pub fn spec(&self) -> &ConvNetSpec {
        &self.spec
    }

    /// The stem: a 3×3 convolution and BN (a ReLU follows).
    pub fn stem(&self) -> (&Conv2d, &BatchNorm) {
        (&self.stem.0, &self.stem.1)
    }

    /// Every block with its state-dict prefix (`layer{s}.{b}`), in order.
    pub fn units(&self) -> Vec<(String, &ConvUnit)> {
        self.stages
            .iter()
            .enumerate()
            .flat_map(|(s, stage)| {
                stage
                    .iter()
                    .enumerate()
                    .map(move |(b, u)| (format!("layer{}.{b}", s + 1), u))
            })
            .collect()
    }

    /// The classifier after global average pooling.
    pub fn fc(&self) -> &Linear {
        &self.fc
    }

    /// Blocks in order, across the stages.
    fn unit(&self, b: usize) -> &ConvUnit {
        self.stages
            .iter()
            .flatten()
            .nth(b)
            .expect("block index in range")
    }

    /// Logits (batch, classes) for images (batch, in_channels, size, size).
    pub fn logits(&self, x: &Tensor, mode: BnMode) -> Result<Tensor> {
        use crate::BlockNet;
        let mut h = self.stem_forward(x, mode)?;
        for block in self.stages.iter().flatten() {
            h = block.forward(&h, mode)?;
        }
        self.head_forward(&h, mode)
    }

    fn visit(&self, params: bool, f: &mut dyn FnMut(String, &Var)) {
        let visit_bn = |bn: &BatchNorm, p: &str, f: &mut dyn FnMut(String, &Var)| {
            if params {
                bn.visit_parameters(p, f)
            } else {
                bn.visit_buffers(p, f)
            }
        };
        if params {
            self.stem.0.visit_parameters("conv1", f);
        }
        visit_bn(&self.stem.1, "bn1", f);
        for (s, stage) in self.stages.iter().enumerate() {
            for (b, block) in stage.iter().enumerate() {
                let p = format!("layer{}.{b}", s + 1);
                for (i, (conv, bn)) in block.convs.iter().enumerate() {
                    if params {
                        conv.visit_parameters(&format!("{p}.conv{}", i + 1), f);
                    }
                    visit_bn(bn, &format!("{p}.bn{}", i + 1), f);
                }
                if let Some(Downsample::Project(conv, bn)) = &block.shortcut {
                    if params {
                        conv.visit_parameters(&format!("{p}.downsample.0"), f);
                    }
                    visit_bn(bn, &format!("{p}.downsample.1"), f);
                }
            }
        }
        if params {
            self.fc.visit_parameters("fc", f);
        }
    }
}

impl Model for ConvNet {
    fn forward(&self, x: &Tensor, mode: BnMode) -> Result<Tensor> {
        self.logits(x, mode)
    }

    fn parameters(&self) -> Vec<(String, Var)> {
        let mut out = Vec::new();
        self.visit(true, &mut |n, v| out.push((n, v.clone())));
        out
    }

    fn buffers(&self) -> Vec<(String, Var)> {
        let mut out = Vec::new();
        self.visit(false, &mut |n, v| out.push((n, v.clone())));
        out
    }

    fn dtype(&self) -> DType {
        self.spec.precision.dtype()
    }
}

struct ConvInit<'a> {
    spec: &'a ConvNetSpec,
    dtype: DType,
}

impl ConvInit<'_> {
    fn var(&self, values: Vec<f64>, shape: &[usize]) -> Result<Var> {
        let t = Tensor::from_vec(values, shape, &Device::Cpu)?.to_dtype(self.dtype)?;
        Ok(Var::from_tensor(&t)?)
    }

    /// He et al. draw convolution weights with fan_in = in·k·k; no bias (BN follows).
    fn conv(
        &self,
        name: &str,
        c_in: usize,
        c_out: usize,
        k: usize,
        stride: usize,
    ) -> Result<Conv2d> {
        let w = self.spec.weight_init.draw(
            c_out,
            c_in * k * k,
            &mut tensor_rng(self.spec.seed, &format!("{name}.weight")),
        );
        Ok(Conv2d::new(
            self.var(w, &[c_out, c_in, k, k])?,
            None,
            stride,
            k / 2,
        ))
    }

    fn bn(&self, c: usize) -> Result<BatchNorm> {
        Ok(BatchNorm::new(
            self.var(vec![1.0; c], &[c])?,
            self.var(vec![0.0; c], &[c])?,
            self.var(vec![0.0; c], &[c])?,
            self.var(vec![1.0; c], &[c])?,
        ))
    }

    /// PyTorch's `nn.Linear` default init for the classifier: U(±1/√fan_in).
    fn linear(&self, name: &str, fan_in: usize, fan_out: usize) -> Result<Linear> {
        let bound = 1.0 / (fan_in as f64).sqrt();
        let draw = |suffix: &str, n: usize| {
            crate::BiasInit::Uniform { bound }.draw(
                n,
                fan_in,
                &mut tensor_rng(self.spec.seed, &format!("{name}.{suffix}")),
            )
        };
        Ok(Linear::new(
            self.var(draw("weight", fan_out * fan_in), &[fan_out, fan_in])?,
            Some(self.var(draw("bias", fan_out), &[fan_out])?),
        ))
    }
}

impl crate::BlockNet for ConvNet {
    fn num_blocks(&self) -> usize {
        self.stages.iter().map(Vec::len).sum()
    }

    fn stem_forward(&self, x: &Tensor, mode: BnMode) -> Result<Tensor> {
        let x = x.to_dtype(self.dtype())?;
        relu(&self.stem.1.forward(&self.stem.0.forward(&x)?, mode)?)
    }

    fn block_forward(&self, b: usize, h: &Tensor, mode: BnMode) -> Result<Tensor> {
        self.unit(b).forward(h, mode)
    }

    fn block_parts(&self, b: usize, h: &Tensor, mode: BnMode) -> Result<Option<(Tensor, Tensor)>> {
        let unit = self.unit(b);
        Ok(match &unit.shortcut {
            Some(s) => Some((unit.main_path(h, mode)?, shortcut(s, h, mode)?)),
            None => None,
        })
    }

    fn block_post(&self, _b: usize, pre: &Tensor) -> Result<Tensor> {
        relu(pre)
    }

    fn keeps_shape(&self, b: usize) -> bool {
        self.unit(b).keeps_shape()
    }

    fn block_group(&self, b: usize) -> usize {
        let mut seen = 0;
        for (s, stage) in self.stages.iter().enumerate() {
            seen += stage.len();
            if b < seen {
                return s;
            }
        }
        self.stages.len()
    }

    fn head_forward(&self, h: &Tensor, _mode: BnMode) -> Result<Tensor> {
        self.fc.forward(&h.mean((2, 3))?)
    }
}

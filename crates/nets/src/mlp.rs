//! A multi-layer perceptron: linear stem → `depth` blocks → linear head.
//!
//! Tensor names follow PyTorch's `state_dict` of the equivalent module:
//! `stem.{weight,bias}`, `layers.{l}.fc.weight` … (plain), `layers.{l}.{bn1,fc1,bn2,fc2}.…`
//! (residual), `head.{weight,bias}`; BN layers add `running_mean`/`running_var` buffers.

use candle_core::{DType, Device, Tensor, Var};

use crate::{
    Arch, BatchNorm, Block, BnMode, BranchInit, Dense, DrawCache, FeatureNorm, Layer, Linear,
    NetError, NetSpec, Norm, Order, PrecisionExt, Residual, ResidualShortcut, Result, Sequential,
    ShortcutDropout, Skip, Step, WeightNormLinear, derive_seed, tensor_rng,
};

#[derive(Clone, Debug)]
/// An MLP of the shattered-gradients families: linear stem, `depth` blocks, linear head.
pub struct Mlp {
    spec: NetSpec,
    stem: Linear,
    blocks: Vec<Block>,
    head: Linear,
}

/// What one forward pass saw: the output and every hidden state h_0 … h_L
/// (h_0 the stem's output, h_l the output of block l).
#[derive(Clone, Debug)]
pub struct Trace {
    /// f(x), (batch, output_dim).
    pub output: Tensor,
    /// h_0 (stem output) … h_L (last block output), each (batch, width).
    pub hidden: Vec<Tensor>,
}

impl Mlp {
    /// Build the net of a validated spec, drawing every tensor from its own
    /// seeded stream (see [`derive_seed`](crate::derive_seed)).
    pub fn new(spec: &NetSpec) -> Result<Self> {
        Self::build(spec, None)
    }

    /// [`Mlp::new`] with the Gaussian weight draws taken from (and kept in)
    /// `draws`: nets that share a seed and differ in the scale of a Gaussian
    /// init or in their activation draw once, with the same weights as alone.
    pub fn with_draws(spec: &NetSpec, draws: &DrawCache) -> Result<Self> {
        Self::build(spec, Some(draws))
    }

    fn build(spec: &NetSpec, draws: Option<&DrawCache>) -> Result<Self> {
        let init = Init {
            spec,
            dtype: spec.precision.dtype(),
            draws,
        };
        // In plain-bn the stem feeds Linear → BN, which removes any constant
        // shift: a stem bias would be a parameter with no effect.
        let stem_bias = spec.arch.stem_bias();
        let stem = init.linear("stem", spec.input_dim, spec.width, stem_bias)?;
        let blocks = (0..spec.depth)
            .map(|l| init.block(&format!("layers.{l}")))
            .collect::<Result<Vec<_>>>()?;
        let head = init.linear("head", spec.width, spec.output_dim, true)?;
        Ok(Mlp {
            spec: spec.clone(),
            stem,
            blocks,
            head,
        })
    }

    /// The validated spec.
    pub fn spec(&self) -> &NetSpec {
        &self.spec
    }

    /// Number of blocks L.
    pub fn depth(&self) -> usize {
        self.blocks.len()
    }

    /// Element type of every tensor.
    pub fn dtype(&self) -> DType {
        self.spec.precision.dtype()
    }

    /// The input layer (scalar or vector input → width).
    pub fn stem(&self) -> &Linear {
        &self.stem
    }

    /// The blocks, input to output.
    pub fn blocks(&self) -> &[Block] {
        &self.blocks
    }

    /// The output layer (width → output_dim).
    pub fn head(&self) -> &Linear {
        &self.head
    }

    /// f(x) for x of shape (batch, input_dim).
    pub fn forward(&self, x: &Tensor, mode: BnMode) -> Result<Tensor> {
        Ok(self.trace_to(x, mode, self.depth(), None)?.output)
    }

    /// Forward pass keeping every hidden state. When `probes` is given (one zero
    /// `Var` of the hidden shape per state h_0 … h_L), each is added to its state,
    /// so after `backward` the gradient of the probe is dL/dh_l.
    pub fn trace(&self, x: &Tensor, mode: BnMode, probes: Option<&[Var]>) -> Result<Trace> {
        self.trace_to(x, mode, self.depth(), probes)
    }

    /// Like [`trace`](Self::trace) for the depth-`depth` net: the first `depth`
    /// blocks, then the head. With name-seeded weights this equals the net built
    /// from `spec.with_depth(depth)`.
    pub fn trace_to(
        &self,
        x: &Tensor,
        mode: BnMode,
        depth: usize,
        probes: Option<&[Var]>,
    ) -> Result<Trace> {
        if depth > self.depth() {
            return Err(NetError::invalid(
                "depth",
                format!("cannot run {depth} blocks of a depth-{} net", self.depth()),
            ));
        }
        if let Some(p) = probes
            && p.len() != depth + 1
        {
            return Err(NetError::invalid(
                "probes",
                format!(
                    "need {} probes (h_0 … h_{depth}), got {}",
                    depth + 1,
                    p.len()
                ),
            ));
        }
        let probe = |h: Tensor, l: usize| -> Result<Tensor> {
            Ok(match probes {
                Some(p) => (h + p[l].as_tensor())?,
                None => h,
            })
        };
        let x = x.to_dtype(self.dtype())?;
        let mut hidden = Vec::with_capacity(depth + 1);
        let mut h = probe(self.stem.forward(&x)?, 0)?;
        hidden.push(h.clone());
        for (l, block) in self.blocks[..depth].iter().enumerate() {
            h = probe(block.forward(&h, mode)?, l + 1)?;
            hidden.push(h.clone());
        }
        let output = self.head.forward(&h)?;
        Ok(Trace { output, hidden })
    }

    /// Set every BN's running statistics to the statistics of batch `x` (mean
    /// and biased variance), layer by layer. Afterwards the net in
    /// [`BnMode::Eval`] on `x` computes exactly what [`BnMode::PerSample`] does,
    /// as a function whose samples do not interact.
    pub fn calibrate_batch_norm(&self, x: &Tensor) -> Result<()> {
        let mut h = self.stem.forward(&x.to_dtype(self.dtype())?)?;
        for block in &self.blocks {
            h = block.calibrate(&h)?;
        }
        Ok(())
    }

    /// Trainable parameters in state-dict order, with their names.
    pub fn parameters(&self) -> Vec<(String, Var)> {
        let mut out = Vec::new();
        let mut push = |name: String, v: &Var| out.push((name, v.clone()));
        self.stem.visit_parameters("stem", &mut push);
        for (l, b) in self.blocks.iter().enumerate() {
            b.visit_parameters(&format!("layers.{l}"), &mut push);
        }
        self.head.visit_parameters("head", &mut push);
        out
    }

    /// Non-trainable state (BN running statistics), with their names.
    pub fn buffers(&self) -> Vec<(String, Var)> {
        let mut out = Vec::new();
        let mut push = |name: String, v: &Var| out.push((name, v.clone()));
        for (l, b) in self.blocks.iter().enumerate() {
            b.visit_buffers(&format!("layers.{l}"), &mut push);
        }
        out
    }

    /// Parameters and buffers: everything a weights file holds.
    pub fn state_dict(&self) -> Vec<(String, Var)> {
        let mut all = self.parameters();
        all.extend(self.buffers());
        all
    }
}

/// Draws the tensors of a net from its spec.
struct Init<'a> {
    spec: &'a NetSpec,
    dtype: DType,
    draws: Option<&'a DrawCache>,
}

impl Init<'_> {
    fn var(&self, values: Vec<f64>, shape: &[usize]) -> Result<Var> {
        // Straight into the variable's storage: a tensor made a Var is copied again.
        Ok(match self.dtype {
            DType::F64 => Var::from_vec(values, shape, &Device::Cpu)?,
            DType::F32 => Var::from_vec(
                values.into_iter().map(|v| v as f32).collect::<Vec<f32>>(),
                shape,
                &Device::Cpu,
            )?,
            dtype => {
                let t = Tensor::from_vec(values, shape, &Device::Cpu)?.to_dtype(dtype)?;
                Var::from_tensor(&t)?
            }
        })
    }

    fn linear(&self, name: &str, fan_in: usize, fan_out: usize, bias: bool) -> Result<Linear> {
        let seed = self.spec.seed;
        let (init, w_name) = (&self.spec.weight_init, format!("{name}.weight"));
        let w = match self.draws {
            Some(draws) => draws.weight(init, fan_out, fan_in, seed, &w_name),
            None => init.draw(fan_out, fan_in, &mut tensor_rng(seed, &w_name)),
        };
        let weight = self.var(w, &[fan_out, fan_in])?;
        let bias = if bias {
            let b = self.spec.bias_init.draw(
                fan_out,
                fan_in,
                &mut tensor_rng(seed, &format!("{name}.bias")),
            );
            Some(self.var(b, &[fan_out])?)
        } else {
            None
        };
        Ok(Linear::new(weight, bias))
    }

    /// γ = 1, β = 0, running mean 0, running variance 1 (PyTorch's defaults).
    fn batch_norm(&self, width: usize) -> Result<BatchNorm> {
        Ok(BatchNorm::new(
            self.var(vec![1.0; width], &[width])?,
            self.var(vec![0.0; width], &[width])?,
            self.var(vec![0.0; width], &[width])?,
            self.var(vec![1.0; width], &[width])?,
        ))
    }

    /// The norm layer of the arch over `width` features: γ = 1, β = 0.
    fn norm_layer(&self, width: usize) -> Result<Layer> {
        let norm = self.spec.arch.norm();
        Ok(match norm.feature_kind() {
            Some(kind) => Layer::Norm(FeatureNorm::new(
                kind,
                self.var(vec![1.0; width], &[width])?,
                kind.has_shift()
                    .then(|| self.var(vec![0.0; width], &[width]))
                    .transpose()?,
            )),
            None => Layer::BatchNorm(self.batch_norm(width)?),
        })
    }

    /// A linear layer, weight-normalised when the arch says so, its weight
    /// drawn then multiplied by `scale`
    /// (at 0 the bias is 0 too: Fixup's zero last layer).
    fn fc(
        &self,
        name: &str,
        fan_in: usize,
        fan_out: usize,
        bias: bool,
        scale: f64,
    ) -> Result<Layer> {
        let mut l = self.linear(name, fan_in, fan_out, bias)?;
        if scale != 1.0 {
            let bias = match l.bias() {
                Some(b) if scale == 0.0 => Some(Var::from_tensor(&b.as_tensor().zeros_like()?)?),
                b => b.cloned(),
            };
            l = Linear::new(Var::from_tensor(&(l.weight().as_tensor() * scale)?)?, bias);
        }
        self.reparametrised(l)
    }

    /// `l` as a block layer: weight-normalised when the arch says so.
    fn reparametrised(&self, l: Linear) -> Result<Layer> {
        Ok(if self.spec.arch.norm() == Norm::Weight {
            Layer::WeightNorm(WeightNormLinear::from_linear(&l)?)
        } else {
            Layer::Linear(l)
        })
    }

    /// Looks-linear weights [M, −M] (Balduzzi et al. 2017): M from the weight
    /// init of a W → W layer divided by √2, because CReLU doubles the fan-in
    /// (He: Var M = 1/W; orthogonal(√2): M orthogonal).
    fn mirrored(&self, name: &str, width: usize, bias: bool) -> Result<Layer> {
        let half = self.linear(name, width, width, bias)?;
        let m = (half.weight().as_tensor() * std::f64::consts::FRAC_1_SQRT_2)?;
        let w = Tensor::cat(&[&m, &m.neg()?], 1)?;
        self.reparametrised(Linear::new(Var::from_tensor(&w)?, half.bias().cloned()))
    }

    fn block(&self, prefix: &str) -> Result<Block> {
        let w = self.spec.width;
        let arch = self.spec.arch;
        let norm = arch.norm();
        // Fixup: inner branch layers scaled by L^(−1/(2k−2)), the last one zero.
        let fixup = |index: usize| match arch {
            Arch::Residual {
                init: BranchInit::Fixup,
                branch: k,
                ..
            } => {
                if index == k {
                    0.0
                } else {
                    (self.spec.depth as f64).powf(-1.0 / (2.0 * k as f64 - 2.0))
                }
            }
            _ => 1.0,
        };
        let suffix = |i: usize| if i == 0 { String::new() } else { i.to_string() };
        let mut body = Sequential::new();
        for step in arch.block_steps(w) {
            match step {
                Step::Fc {
                    index,
                    fan_in,
                    fan_out,
                    bias,
                } => {
                    let name = format!("fc{}", suffix(index));
                    let full = format!("{prefix}.{name}");
                    let layer = match arch {
                        Arch::Plain {
                            looks_linear: true, ..
                        } => self.mirrored(&full, w, bias)?,
                        _ => self.fc(&full, fan_in, fan_out, bias, fixup(index))?,
                    };
                    body.push(name, layer);
                }
                Step::Norm { index, width } => body.push(
                    format!("{}{}", norm.tag(), suffix(index)),
                    self.norm_layer(width)?,
                ),
                Step::Act { index } => body.push(
                    format!("act{}", suffix(index)),
                    Layer::Act(self.spec.activation),
                ),
                Step::CRelu => body.push("crelu", Layer::CRelu),
            }
        }
        let gate = |b: f64| -> Result<Linear> {
            let g = self.linear(&format!("{prefix}.gate"), w, w, false)?;
            Ok(Linear::new(
                g.weight().clone(),
                Some(self.var(vec![b; w], &[w])?),
            ))
        };
        Ok(match arch {
            Arch::Plain { .. } => Block::Dense(Dense::new(body)),
            Arch::Highway { gate_bias } => Block::Residual(Residual::new(body, 1.0).with_shortcut(
                ResidualShortcut::Gate {
                    gate: gate(gate_bias)?,
                    exclusive: true,
                },
            )),
            Arch::Residual {
                order,
                alpha,
                skip,
                init,
                repeat,
                ..
            } => {
                let shortcut = match skip {
                    Skip::Identity => ResidualShortcut::Identity,
                    Skip::Scale(l) => ResidualShortcut::Scale(l),
                    Skip::LearnedScale(l) => {
                        ResidualShortcut::LearnedScale(self.var(vec![l], &[1])?)
                    }
                    Skip::Gate(b) => ResidualShortcut::Gate {
                        gate: gate(b)?,
                        exclusive: true,
                    },
                    Skip::ShortcutGate(b) => ResidualShortcut::Gate {
                        gate: gate(b)?,
                        exclusive: false,
                    },
                    Skip::Projection => ResidualShortcut::Projection(self.linear(
                        &format!("{prefix}.proj"),
                        w,
                        w,
                        false,
                    )?),
                    Skip::Dropout(p) => ResidualShortcut::Dropout(ShortcutDropout::new(
                        p,
                        derive_seed(self.spec.seed, &format!("{prefix}.dropout")),
                    )),
                };
                let mut after = Sequential::new();
                let mut recursions = Vec::new();
                match order {
                    Order::Post => after.push("act_out", Layer::Act(self.spec.activation)),
                    Order::PostNorm if norm.is_layer() => {
                        for j in 1..=repeat {
                            let mut n = Sequential::new();
                            n.push(format!("post{j}"), self.norm_layer(w)?);
                            if j == 1 {
                                after = n;
                            } else {
                                recursions.push(n);
                            }
                        }
                    }
                    _ => {}
                }
                let mut block = Residual::new(body, alpha)
                    .with_shortcut(shortcut)
                    .with_after(after)
                    .with_recursions(recursions);
                if let Some(c) = init.gain() {
                    block = block.with_gain(self.var(vec![c], &[1])?);
                }
                Block::Residual(block)
            }
        })
    }
}

impl crate::Model for Mlp {
    fn forward(&self, x: &Tensor, mode: BnMode) -> Result<Tensor> {
        Mlp::forward(self, x, mode)
    }

    fn parameters(&self) -> Vec<(String, Var)> {
        Mlp::parameters(self)
    }

    fn buffers(&self) -> Vec<(String, Var)> {
        Mlp::buffers(self)
    }

    fn dtype(&self) -> DType {
        Mlp::dtype(self)
    }
}

impl crate::BlockNet for Mlp {
    fn num_blocks(&self) -> usize {
        self.blocks.len()
    }

    fn stem_forward(&self, x: &Tensor, _mode: BnMode) -> Result<Tensor> {
        self.stem.forward(&x.to_dtype(self.dtype())?)
    }

    fn block_forward(&self, b: usize, h: &Tensor, mode: BnMode) -> Result<Tensor> {
        self.blocks[b].forward(h, mode)
    }

    fn block_parts(&self, b: usize, h: &Tensor, mode: BnMode) -> Result<Option<(Tensor, Tensor)>> {
        Ok(match &self.blocks[b] {
            Block::Residual(r) if r.is_plain_sum() => {
                let f = r.branch().forward(h, mode)?;
                let f = if r.alpha() == 1.0 {
                    f
                } else {
                    (f * r.alpha())?
                };
                Some((f, h.clone()))
            }
            _ => None,
        })
    }

    fn keeps_shape(&self, _b: usize) -> bool {
        true
    }

    fn head_forward(&self, h: &Tensor, _mode: BnMode) -> Result<Tensor> {
        self.head.forward(h)
    }
}

//! A multi-layer perceptron: linear stem → `depth` blocks → linear head.
//!
//! Tensor names follow PyTorch's `state_dict` of the equivalent module:
//! `stem.{weight,bias}`, `layers.{l}.fc.weight` … (plain), `layers.{l}.{bn1,fc1,bn2,fc2}.…`
//! (residual), `head.{weight,bias}`; BN layers add `running_mean`/`running_var` buffers.

use candle_core::{DType, Device, Tensor, Var};

use crate::init::tensor_rng;
use crate::{
    Activation, Arch, BatchNorm, Block, BnMode, Dense, Layer, Linear, NetError, NetSpec, Norm,
    Residual, Result, Sequential,
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
        let init = Init {
            spec,
            dtype: spec.precision.dtype(),
        };
        // In plain-bn the stem feeds Linear → BN, which removes any constant
        // shift: a stem bias would be a parameter with no effect.
        let stem_bias = spec.arch != Arch::PLAIN_BN;
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
}

impl Init<'_> {
    fn var(&self, values: Vec<f64>, shape: &[usize]) -> Result<Var> {
        let t = Tensor::from_vec(values, shape, &Device::Cpu)?.to_dtype(self.dtype)?;
        Ok(Var::from_tensor(&t)?)
    }

    fn linear(&self, name: &str, fan_in: usize, fan_out: usize, bias: bool) -> Result<Linear> {
        let seed = self.spec.seed;
        let w = self.spec.weight_init.draw(
            fan_out,
            fan_in,
            &mut tensor_rng(seed, &format!("{name}.weight")),
        );
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

    fn block(&self, prefix: &str) -> Result<Block> {
        let w = self.spec.width;
        let act: Activation = self.spec.activation;
        let bn = self.spec.arch.norm() == Norm::Batch;
        Ok(match self.spec.arch {
            // Linear → [BN] → φ; a linear layer feeding BN has no bias.
            Arch::Plain { .. } => {
                let mut body = Sequential::new();
                body.push(
                    "fc",
                    Layer::Linear(self.linear(&format!("{prefix}.fc"), w, w, !bn)?),
                );
                if bn {
                    body.push("bn", Layer::BatchNorm(self.batch_norm(w)?));
                }
                body.push("act", Layer::Act(act));
                Block::Dense(Dense::new(body))
            }
            // k × ([BN] → φ → Linear), pre-activation order.
            Arch::Residual { branch, alpha, .. } => {
                let mut f = Sequential::new();
                for i in 1..=branch {
                    if bn {
                        f.push(format!("bn{i}"), Layer::BatchNorm(self.batch_norm(w)?));
                    }
                    f.push(format!("act{i}"), Layer::Act(act));
                    let has_bias = !bn || i == branch;
                    f.push(
                        format!("fc{i}"),
                        Layer::Linear(self.linear(&format!("{prefix}.fc{i}"), w, w, has_bias)?),
                    );
                }
                Block::Residual(Residual::new(f, alpha))
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
            Block::Residual(r) => {
                let f = r.branch().forward(h, mode)?;
                let f = if r.alpha() == 1.0 {
                    f
                } else {
                    (f * r.alpha())?
                };
                Some((f, h.clone()))
            }
            Block::Dense(_) => None,
        })
    }

    fn block_post(&self, _b: usize, pre: &Tensor) -> Result<Tensor> {
        Ok(pre.clone())
    }

    fn keeps_shape(&self, _b: usize) -> bool {
        true
    }

    fn block_group(&self, _b: usize) -> usize {
        0
    }

    fn head_forward(&self, h: &Tensor, _mode: BnMode) -> Result<Tensor> {
        self.head.forward(h)
    }
}

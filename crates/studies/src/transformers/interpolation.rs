//! The shattered-gradients view (Balduzzi et al. 2017) for transformers:
//! ∂f/∂e_s of a fixed output f = ⟨u, logits⟩ along the embeddings
//! e_s = (1 − s)E(x) + sE(x′) between two sequences, written into spare
//! token rows so that the engine's own backward pass gives ∂f/∂h₀ = ∂f/∂e_s;
//! r₁ along s per depth.

use gradscope_engine::{Options, Want, for_net};
use gradscope_nets::{BnMode, Net, Transformer, TransformerParams, derive_seed};
use ndarray::Array2;
use rand::SeedableRng;
use rand::rngs::StdRng;

use super::{InterpOutput, TransformersConfig, net_params, reversal_batch};
use crate::Result;

impl TransformersConfig {
    /// ∂f/∂e_s along the interpolation for every depth of `interp_depths`
    /// (the depth-L net is the first L blocks of the deepest, with its head).
    pub(super) fn interp(&self, arch: usize, seed: usize) -> Result<InterpOutput> {
        use rand_distr::{Distribution, StandardNormal};
        let p = &self.params;
        let (t, d, n, v) = (p.seq_len, p.width, p.interp_points, p.vocab);
        let deepest = *p.interp_depths.iter().max().expect("checked");
        let s = derive_seed(self.params.seed, &format!("transformers/net{seed}"));
        // Spare token rows V + k·T + t hold grid point k's token t.
        let wide = v + n * t;
        let spec = TransformerParams {
            vocab: wide,
            ..net_params(p, p.interp_archs[arch], deepest, s)
        }
        .check()?;
        let net = Net::Transformer(Transformer::new(&spec)?);
        let mut engine = for_net::<f64>(&net, Options::repeated(BnMode::Eval))?;
        let (pair, _) = reversal_batch(
            2,
            t,
            v,
            derive_seed(p.seed, &format!("transformers/interp{seed}")),
        );
        let ids = Array2::from_shape_fn((n, t), |(k, j)| (v + k * t + j) as f64);
        // f = ⟨u, logits⟩ over the task's V logits per token (the spare
        // rows' logits get weight 0).
        let mut rng =
            StdRng::seed_from_u64(derive_seed(p.seed, &format!("transformers/interp-u{seed}")));
        let mut u = Array2::zeros((n, t * wide));
        for j in 0..t {
            for c in 0..v {
                let w: f64 = StandardNormal.sample(&mut rng);
                u.column_mut(j * wide + c).fill(w);
            }
        }
        let fwd = engine.forward(ids.view(), true)?;
        let all = Want {
            hidden: false,
            params: true,
            gram: false,
        };
        let grads = engine.backward(&fwd, deepest, Some(u.view()), all)?;
        engine.update_params(&grads, &mut |name, _, w, _| {
            if name != "embed.weight" {
                return;
            }
            for k in 0..n {
                let s = k as f64 / (n - 1) as f64;
                for j in 0..t {
                    let (a, b) = (pair[[0, j]] as usize, pair[[1, j]] as usize);
                    for c in 0..d {
                        w[(v + k * t + j) * d + c] = (1.0 - s) * w[a * d + c] + s * w[b * d + c];
                    }
                }
            }
        })?;
        let fwd = engine.forward(ids.view(), false)?;
        let hidden = Want {
            hidden: true,
            params: false,
            gram: false,
        };
        let mut r1 = Vec::new();
        let mut trace = Vec::new();
        for &depth in &p.interp_depths {
            let g = engine.backward(&fwd, depth, Some(u.view()), hidden)?;
            let h0 = &g.hidden[0];
            let rs: Vec<f64> = h0
                .columns()
                .into_iter()
                .map(|c| gradscope_stats::adjacent_correlation(c).unwrap_or(f64::NAN))
                .filter(|r| r.is_finite())
                .collect();
            r1.push(rs.iter().sum::<f64>() / rs.len() as f64);
            if depth == deepest {
                trace = h0.column(0).to_vec();
            }
        }
        Ok(InterpOutput { r1, trace })
    }
}

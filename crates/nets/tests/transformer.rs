//! The transformer checked in f64: its attention against a loop-by-loop
//! reference (with and without the causal mask), every parameter reached by
//! the backward pass in every layer-norm placement, and the backward pass
//! against central finite differences, for the parameters and for the
//! embedded sequence h₀.

use candle_core::{DType, Device, Tensor, Var};
use gradscope_nets::{
    Attention, BlockNet, BnMode, Model, Precision, Transformer, TransformerParams,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn net(arch: &str, depth: usize) -> Transformer {
    let spec = TransformerParams {
        arch: arch.parse().unwrap(),
        depth,
        width: 8,
        heads: 2,
        seq_len: 5,
        vocab: 7,
        ff_width: 12,
        precision: Precision::F64,
        seed: 11,
    }
    .check()
    .unwrap();
    Transformer::new(&spec).unwrap()
}

/// B × T token ids, every id of the vocabulary present.
fn ids(b: usize, t: usize, v: usize) -> Tensor {
    let x: Vec<f64> = (0..b * t).map(|i| ((i * 3 + i / t) % v) as f64).collect();
    Tensor::from_vec(x, (b, t), &Device::Cpu).unwrap()
}

fn values(t: &Tensor) -> Vec<f64> {
    t.flatten_all().unwrap().to_vec1::<f64>().unwrap()
}

/// Multi-head attention by loops over batch, head, query, key.
fn reference_attention(a: &Attention, x: &[f64], b: usize, t: usize, d: usize) -> Vec<f64> {
    let w_in = values(a.in_proj_weight.as_tensor());
    let b_in = values(a.in_proj_bias.as_tensor());
    let w_out = values(a.out_proj_weight.as_tensor());
    let b_out = values(a.out_proj_bias.as_tensor());
    let h = a.heads;
    let dh = d / h;
    let mut out = vec![0.0; b * t * d];
    for n in 0..b {
        let row = |i: usize| &x[(n * t + i) * d..(n * t + i + 1) * d];
        // proj[i][r] = (W_in x_i + b_in)_r
        let proj: Vec<Vec<f64>> = (0..t)
            .map(|i| {
                (0..3 * d)
                    .map(|r| b_in[r] + (0..d).map(|c| w_in[r * d + c] * row(i)[c]).sum::<f64>())
                    .collect()
            })
            .collect();
        let mut concat = vec![vec![0.0; d]; t];
        for head in 0..h {
            for i in 0..t {
                let keys: Vec<usize> = (0..t).filter(|&j| !a.causal || j <= i).collect();
                let score = |j: usize| {
                    (0..dh)
                        .map(|k| proj[i][head * dh + k] * proj[j][d + head * dh + k])
                        .sum::<f64>()
                        / (dh as f64).sqrt()
                };
                let s: Vec<f64> = keys.iter().map(|&j| score(j)).collect();
                let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let z: f64 = s.iter().map(|v| (v - m).exp()).sum();
                for (&j, sj) in keys.iter().zip(&s) {
                    let p = (sj - m).exp() / z;
                    for k in 0..dh {
                        concat[i][head * dh + k] += p * proj[j][2 * d + head * dh + k];
                    }
                }
            }
        }
        for i in 0..t {
            for r in 0..d {
                out[(n * t + i) * d + r] =
                    b_out[r] + (0..d).map(|c| w_out[r * d + c] * concat[i][c]).sum::<f64>();
            }
        }
    }
    out
}

#[test]
fn attention_equals_a_loop_reference_with_and_without_the_mask() {
    for arch in ["transformer", "transformer:causal=on"] {
        let mut net = net(arch, 1);
        let (b, t, d) = (3, 5, 8);
        let mut rng = StdRng::seed_from_u64(4);
        // Non-zero biases, so the test sees them too.
        let a = &mut net_attention(&mut net);
        for v in [&a.in_proj_bias, &a.out_proj_bias] {
            let n = v.elem_count();
            let r: Vec<f64> = (0..n).map(|_| rng.random_range(-0.5..0.5)).collect();
            v.set(&Tensor::from_vec(r, n, &Device::Cpu).unwrap())
                .unwrap();
        }
        let x: Vec<f64> = (0..b * t * d)
            .map(|_| rng.random_range(-2.0..2.0))
            .collect();
        let xt = Tensor::from_vec(x.clone(), (b, t, d), &Device::Cpu).unwrap();
        let ours = values(&a.forward(&xt).unwrap());
        let theirs = reference_attention(a, &x, b, t, d);
        let err = ours
            .iter()
            .zip(&theirs)
            .map(|(p, q)| (p - q).abs())
            .fold(0.0, f64::max);
        assert!(err < 1e-12, "{arch}: max |Δ| = {err:e}");
        // The mask matters: the first token's output differs between the two.
        let mut unmasked = a.clone();
        unmasked.causal = !a.causal;
        let other = values(&unmasked.forward(&xt).unwrap());
        assert!((other[0] - ours[0]).abs() > 1e-6);
        // And under the mask the last token sees the whole sequence.
        let last = (t - 1) * d;
        assert!((other[last] - ours[last]).abs() < 1e-12);
    }
}

fn net_attention(net: &mut Transformer) -> Attention {
    net.blocks()[0].attn.f.clone()
}

/// L = Σ logits ⊙ w for fixed weights w, as a differentiable tensor.
fn loss(out: &Tensor) -> Tensor {
    let n = out.elem_count();
    let w: Vec<f64> = (0..n).map(|i| ((i * 7 % 13) as f64 - 6.0) / 6.0).collect();
    let w = Tensor::from_vec(w, out.shape(), &Device::Cpu).unwrap();
    (out * w).unwrap().sum_all().unwrap()
}

const PLACEMENTS: [&str; 10] = [
    "transformer",
    "transformer:ln=pre",
    "transformer:ln=none",
    "transformer:ln=rezero",
    "transformer:ln=xskip,lambda=0.5",
    "transformer:ln=rskip,lambda=2",
    "transformer:ln=rskip,lambda=3",
    "transformer:ln=pre,causal=on",
    "transformer:ln=post,skip=off",
    "transformer:ln=none,skip=off,mlp=off",
];

/// ReZero's α starts at 0, which cuts every branch off the loss; the
/// gradient tests move it to 0.5 so the branches are seen.
fn open_rezero(net: &Transformer) {
    for (name, v) in net.parameters() {
        if name.contains("alpha") {
            v.set(&Tensor::new(&[0.5f64], &Device::Cpu).unwrap())
                .unwrap();
        }
    }
}

#[test]
fn every_parameter_gets_a_gradient_in_every_placement() {
    for arch in PLACEMENTS {
        let net = net(arch, 3);
        let x = ids(4, 5, 7);
        if arch.contains("rezero") {
            // At α = 0 only the α's themselves and the embeddings and head
            // move: the branches are cut off.
            let g = loss(&net.forward(&x, BnMode::Eval).unwrap())
                .backward()
                .unwrap();
            for (name, v) in net.parameters() {
                let n = g
                    .get(v.as_tensor())
                    .map_or(0.0, |t| values(t).iter().map(|a| a * a).sum::<f64>());
                let branch = name.contains("self_attn") || name.contains("linear");
                assert_eq!(n == 0.0, branch, "{arch} at α = 0: {name} ‖g‖² = {n}");
            }
            open_rezero(&net);
        }
        let g = loss(&net.forward(&x, BnMode::Eval).unwrap())
            .backward()
            .unwrap();
        let params = net.parameters();
        assert!(params.len() > 4);
        for (name, v) in params {
            let t = g
                .get(v.as_tensor())
                .unwrap_or_else(|| panic!("{arch}: {name} has no gradient"));
            let n: f64 = values(t).iter().map(|a| a * a).sum::<f64>().sqrt();
            assert!(n > 1e-8, "{arch}: ‖∂L/∂{name}‖ = {n:e}");
        }
    }
}

fn central(f: impl Fn() -> f64, set: impl Fn(f64), x0: f64, h: f64) -> f64 {
    set(x0 + h);
    let up = f();
    set(x0 - h);
    let down = f();
    set(x0);
    (up - down) / (2.0 * h)
}

#[test]
fn gradients_equal_central_differences_in_f64() {
    let h = 1e-5;
    for arch in PLACEMENTS {
        let net = net(arch, 2);
        if arch.contains("rezero") {
            open_rezero(&net);
        }
        let x = ids(2, 5, 7);
        let value = || {
            loss(&net.forward(&x, BnMode::Eval).unwrap())
                .to_scalar::<f64>()
                .unwrap()
        };
        let g = loss(&net.forward(&x, BnMode::Eval).unwrap())
            .backward()
            .unwrap();
        let mut rng = StdRng::seed_from_u64(9);
        let mut worst = 0.0f64;
        for (name, v) in net.parameters() {
            let grad = values(g.get(v.as_tensor()).unwrap());
            let theta = values(v.as_tensor());
            let dims = v.dims().to_vec();
            // Three entries of each tensor (all of a small one).
            let picks: Vec<usize> = if theta.len() <= 3 {
                (0..theta.len()).collect()
            } else {
                (0..3).map(|_| rng.random_range(0..theta.len())).collect()
            };
            for i in picks {
                let set = |t: f64| {
                    let mut w = theta.clone();
                    w[i] = t;
                    v.set(&Tensor::from_vec(w, dims.as_slice(), &Device::Cpu).unwrap())
                        .unwrap();
                };
                let fd = central(value, set, theta[i], h);
                let err = (fd - grad[i]).abs() / (1.0 + grad[i].abs());
                worst = worst.max(err);
                assert!(
                    err < 1e-6,
                    "{arch}: {name}[{i}] backward {} vs differences {fd}",
                    grad[i]
                );
            }
        }
        // The input of the blocks: h₀, the embedded sequence.
        let h0 = Var::from_tensor(&net.stem_forward(&x, BnMode::Eval).unwrap()).unwrap();
        let from_h0 = |h: &Tensor| {
            let mut h = h.clone();
            for b in 0..net.num_blocks() {
                h = net.block_forward(b, &h, BnMode::Eval).unwrap();
            }
            loss(&net.head_forward(&h, BnMode::Eval).unwrap())
        };
        let gh = values(
            from_h0(h0.as_tensor())
                .backward()
                .unwrap()
                .get(h0.as_tensor())
                .unwrap(),
        );
        let base = values(h0.as_tensor());
        for _ in 0..6 {
            let i = rng.random_range(0..base.len());
            let at = |t: f64| {
                let mut w = base.clone();
                w[i] = t;
                let ht = Tensor::from_vec(w, h0.dims(), &Device::Cpu).unwrap();
                from_h0(&ht).to_scalar::<f64>().unwrap()
            };
            let fd = (at(base[i] + h) - at(base[i] - h)) / (2.0 * h);
            let err = (fd - gh[i]).abs() / (1.0 + gh[i].abs());
            worst = worst.max(err);
            assert!(err < 1e-6, "{arch}: ∂L/∂h₀[{i}] {} vs {fd}", gh[i]);
        }
        assert!(worst.is_finite());
    }
}

/// rSkip+LN's recursions: λ = 1 is post-LN (the same weights under the
/// same names, the same outputs); λ = 2 adds LN₂(x + y₁) after each
/// sublayer, with its own γ, β (`norm{k}_2`), computed here by hand from
/// post-LN's blocks.
#[test]
fn rskip_recursions_are_post_ln_then_ln_of_x_plus_y() {
    let x = ids(2, 5, 7);
    let post = net("transformer", 1);
    let one = net("transformer:ln=rskip", 1);
    let names = |n: &Transformer| {
        n.parameters()
            .into_iter()
            .map(|(k, _)| k)
            .collect::<Vec<_>>()
    };
    assert_eq!(names(&post), names(&one));
    let (a, b) = (
        values(&post.forward(&x, BnMode::Eval).unwrap()),
        values(&one.forward(&x, BnMode::Eval).unwrap()),
    );
    assert_eq!(a, b, "rskip with λ = 1 is post-LN");
    let two = net("transformer:ln=rskip,lambda=2", 1);
    let n2 = names(&two);
    for extra in ["layers.0.norm1_2.weight", "layers.0.norm2_2.bias"] {
        assert!(n2.iter().any(|n| n == extra), "{extra} in {n2:?}");
    }
    assert_eq!(n2.len(), names(&post).len() + 4);
    // Distinct γ, β per recursion, so sharing one would show.
    let mut rng = StdRng::seed_from_u64(5);
    for (name, v) in two.parameters() {
        if name.contains("norm") {
            let r: Vec<f64> = (0..8).map(|_| rng.random_range(0.5..1.5)).collect();
            v.set(&Tensor::from_vec(r, 8, &Device::Cpu).unwrap())
                .unwrap();
        }
    }
    let h0 = two.stem_forward(&x, BnMode::Eval).unwrap();
    let b = &two.blocks()[0];
    let ln = |j: &gradscope_nets::Join, i: usize| match j {
        gradscope_nets::Join::RSkip(v) => v[i].clone(),
        _ => panic!("an rSkip join"),
    };
    let step = |h: &Tensor, f: &Tensor, j: &gradscope_nets::Join| {
        let y1 = ln(j, 0).forward(&(h + f).unwrap()).unwrap();
        ln(j, 1).forward(&(h + y1).unwrap()).unwrap()
    };
    let h1 = step(&h0, &b.attn.f.forward(&h0).unwrap(), &b.attn.join);
    let m = b.mlp.as_ref().unwrap();
    let h2 = step(&h1, &m.f.forward(&h1).unwrap(), &m.join);
    let ours = values(&two.block_forward(0, &h0, BnMode::Eval).unwrap());
    let by_hand = values(&h2);
    let err = ours
        .iter()
        .zip(&by_hand)
        .map(|(p, q)| (p - q).abs())
        .fold(0.0, f64::max);
    assert!(err < 1e-12, "max |Δ| = {err:e}");
}

#[test]
fn the_net_takes_token_ids_and_refuses_others() {
    let net = net("transformer:ln=pre", 2);
    let out = net.forward(&ids(3, 5, 7), BnMode::Eval).unwrap();
    assert_eq!(out.dims(), &[3, 5, 7]);
    assert_eq!(out.dtype(), DType::F64);
    let bad = Tensor::from_vec(vec![7.0f64; 5], (1, 5), &Device::Cpu).unwrap();
    let e = net.forward(&bad, BnMode::Eval).unwrap_err().to_string();
    assert!(e.contains("token id 7"), "{e}");
    let short = Tensor::from_vec(vec![1.0f64; 4], (1, 4), &Device::Cpu).unwrap();
    assert!(net.forward(&short, BnMode::Eval).is_err());
    // The depth-2 net is the first two blocks of the depth-4 net of the seed.
    let deep = self::net("transformer:ln=pre", 4);
    let (p2, p4) = (net.parameters(), deep.parameters());
    let w = |p: &[(String, Var)], n: &str| {
        values(p.iter().find(|(k, _)| k == n).unwrap().1.as_tensor())
    };
    assert_eq!(
        w(&p2, "layers.1.linear2.weight"),
        w(&p4, "layers.1.linear2.weight")
    );
}

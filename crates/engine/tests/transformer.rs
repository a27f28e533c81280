//! A transformer on the engine's kernels: `for_net` picks them, the passes
//! are laid out as documented (rows of T·d hidden values, T·V outputs; the
//! depth-L net is the first L blocks and the head), and every number equals
//! candle's autograd (the oracle) in f64: outputs, loss, every parameter
//! gradient and ∂L/∂h of every block, for every placement of the grammar.

mod common;
use common::perturb_vectors;

use gradscope_engine::{EngineError, Kernels, Options, Want, for_net};
use gradscope_nets::{
    BnMode, Model, Net, Precision, Transformer, TransformerArch, TransformerParams,
};
use ndarray::Array2;

fn net(arch: &str, precision: Precision) -> Net {
    let p = TransformerParams {
        arch: arch.parse().unwrap(),
        depth: 3,
        width: 8,
        heads: 2,
        seq_len: 4,
        vocab: 5,
        ff_width: 0,
        precision,
        seed: 3,
    };
    let t = Transformer::new(&p.check().unwrap()).unwrap();
    // Biases, γ, β and α off 0 and 1, so a dropped one would show.
    perturb_vectors(&t.parameters());
    Net::Transformer(t)
}

fn ids() -> Array2<f64> {
    Array2::from_shape_fn((3, 4), |(i, j)| ((i + 2 * j) % 5) as f64)
}

/// A per-token loss gradient with every entry different.
fn out_grad(n: usize, w: usize) -> Array2<f64> {
    Array2::from_shape_fn((n, w), |(i, j)| {
        ((i * 7 + j * 3) as f64 * 0.41).sin() / 10.0
    })
}

/// ‖a − b‖ / ‖b‖ (absolute when b is zero).
fn rel(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    let d: f64 = a.iter().zip(b).map(|(a, b)| (a - b) * (a - b)).sum();
    let n: f64 = b.iter().map(|b| b * b).sum();
    if n == 0.0 { d.sqrt() } else { (d / n).sqrt() }
}

fn all_archs() -> Vec<&'static str> {
    let mut v = TransformerArch::VARIANTS.to_vec();
    v.extend([
        "transformer:ln=pre,skip=off",
        "transformer:ln=rezero,mlp=off,causal=on",
        "transformer:ln=xskip,lambda=0.5,skip=off",
        "transformer:ln=rskip,lambda=3",
        "transformer:ln=rskip,lambda=2,skip=off,causal=on",
    ]);
    v
}

#[test]
fn a_transformer_runs_on_the_engine() {
    let net = net("transformer:ln=pre", Precision::F64);
    let engine = for_net::<f64>(&net, Options::once(BnMode::Eval)).unwrap();
    assert_eq!(engine.kernels(), &Kernels::Engine);
    let x = ids();
    let fwd = engine.forward(x.view(), true).unwrap();
    assert_eq!(fwd.hidden.len(), 4);
    assert!(fwd.hidden.iter().all(|h| h.dim() == (3, 4 * 8)));
    let out = engine.output(&fwd, 3).unwrap();
    assert_eq!(out.dim(), (3, 4 * 5));
    let whole = engine.predict(x.view()).unwrap();
    assert!((&out - &whole).iter().all(|d| d.abs() < 1e-12));
    let want = Want {
        hidden: true,
        params: true,
        gram: false,
    };
    let g = engine.backward(&fwd, 3, None, want).unwrap();
    assert_eq!(g.params.len(), net.parameters().len());
    // Token ids are not differentiable: ∂L/∂x is zero, ∂L/∂h₀ is not.
    assert!(g.input.iter().all(|&v| v == 0.0));
    assert!(g.hidden_norms[0] > 0.0);
    let g1 = engine.backward(&fwd, 1, None, want).unwrap();
    assert!(
        g1.params
            .iter()
            .all(|(n, _)| !n.starts_with("layers.1") && !n.starts_with("layers.2"))
    );
    assert_eq!(g1.hidden_norms.len(), 2);
    // What the engine does not compute is a typed error naming it.
    let gram = Want { gram: true, ..want };
    match engine.backward(&fwd, 3, None, gram) {
        Err(EngineError::Unsupported(what)) => assert!(what.contains("Gram"), "{what}"),
        other => panic!("{:?}", other.map(|_| ())),
    }
    // Bad token ids: one-line errors.
    let bad = Array2::from_elem((2, 4), 5.0);
    let e = engine.forward(bad.view(), false).err().unwrap().to_string();
    assert!(e.contains("token id 5"), "{e}");
    let short = Array2::zeros((2, 3));
    assert!(engine.forward(short.view(), false).is_err());
}

/// The engine's passes equal candle's for every placement, at every depth
/// of the forward pass, to 1e-10 relative in f64.
#[test]
fn every_placement_equals_candle_in_f64() {
    let want = Want {
        hidden: true,
        params: true,
        gram: false,
    };
    for arch in all_archs() {
        let net = net(arch, Precision::F64);
        let ours = for_net::<f64>(&net, Options::once(BnMode::Eval)).unwrap();
        let oracle = for_net::<f64>(&net, Options::once(BnMode::Eval).on_candle()).unwrap();
        let x = ids();
        let (fo, fc) = (
            ours.forward(x.view(), true).unwrap(),
            oracle.forward(x.view(), true).unwrap(),
        );
        let mut worst = 0.0f64;
        let mut check = |what: String, a: &[f64], b: &[f64]| {
            let e = rel(a, b);
            assert!(e < 1e-10, "{arch}: {what} differs by {e:.2e}");
            worst = worst.max(e);
        };
        for (l, (a, b)) in fo.hidden.iter().zip(&fc.hidden).enumerate() {
            check(
                format!("h_{l}"),
                a.as_slice().unwrap(),
                b.as_slice().unwrap(),
            );
        }
        for depth in [1, 3] {
            let (oa, ob) = (
                ours.output(&fo, depth).unwrap(),
                oracle.output(&fc, depth).unwrap(),
            );
            check(
                format!("depth {depth} outputs"),
                oa.as_slice().unwrap(),
                ob.as_slice().unwrap(),
            );
            let g = out_grad(3, 4 * 5);
            let (ga, gb) = (
                ours.backward(&fo, depth, Some(g.view()), want).unwrap(),
                oracle.backward(&fc, depth, Some(g.view()), want).unwrap(),
            );
            assert!(gb.unreached.is_empty(), "{arch}: {:?}", gb.unreached);
            assert_eq!(ga.hidden.len(), depth + 1);
            for (l, (a, b)) in ga.hidden.iter().zip(&gb.hidden).enumerate() {
                check(
                    format!("depth {depth} ∂L/∂h_{l}"),
                    a.as_slice().unwrap(),
                    b.as_slice().unwrap(),
                );
            }
            check(
                format!("depth {depth} ‖∂L/∂h‖"),
                &ga.hidden_norms,
                &gb.hidden_norms,
            );
            assert_eq!(ga.params.len(), gb.params.len(), "{arch}");
            for ((na, a), (nb, b)) in ga.params.iter().zip(&gb.params) {
                assert_eq!(na, nb, "{arch}: state-dict order");
                check(format!("depth {depth} ∂L/∂{na}"), a, b);
            }
        }
        // The pieces the lesion and path views use.
        let h1 = &fo.hidden[1];
        check(
            "block 1".into(),
            ours.block(1, h1).unwrap().as_slice().unwrap(),
            oracle.block(1, h1).unwrap().as_slice().unwrap(),
        );
        check(
            "stem".into(),
            ours.stem(x.view()).unwrap().as_slice().unwrap(),
            oracle.stem(x.view()).unwrap().as_slice().unwrap(),
        );
        let g = out_grad(3, 4 * 5);
        check(
            "head VJP".into(),
            ours.head_vjp(&fo, g.view()).unwrap().as_slice().unwrap(),
            oracle.head_vjp(&fc, g.view()).unwrap().as_slice().unwrap(),
        );
        let v = [0.3, -1.0, 0.5, 2.0];
        check(
            "forward-mode sweep".into(),
            ours.tangent_sweep(x.view(), &v)
                .unwrap()
                .as_slice()
                .unwrap(),
            oracle
                .tangent_sweep(x.view(), &v)
                .unwrap()
                .as_slice()
                .unwrap(),
        );
        eprintln!("{arch}: worst relative difference from candle {worst:.1e}");
    }
}

/// In f32 the engine and candle agree to f32 rounding.
#[test]
fn f32_equals_candle_to_rounding() {
    let net = net("transformer:ln=pre,causal=on", Precision::F32);
    let ours = for_net::<f32>(&net, Options::repeated(BnMode::Eval)).unwrap();
    let oracle = for_net::<f32>(&net, Options::once(BnMode::Eval).on_candle()).unwrap();
    let x = ids().mapv(|v| v as f32);
    let (fo, fc) = (
        ours.forward(x.view(), true).unwrap(),
        oracle.forward(x.view(), true).unwrap(),
    );
    let want = Want {
        hidden: false,
        params: true,
        gram: false,
    };
    let (ga, gb) = (
        ours.backward(&fo, 3, None, want).unwrap(),
        oracle.backward(&fc, 3, None, want).unwrap(),
    );
    for ((n, a), (_, b)) in ga.params.iter().zip(&gb.params) {
        let a: Vec<f64> = a.iter().map(|&v| v as f64).collect();
        let b: Vec<f64> = b.iter().map(|&v| v as f64).collect();
        let e = rel(&a, &b);
        assert!(e < 1e-4, "∂L/∂{n} differs by {e:.2e}");
    }
}

/// An optimiser step through `update_params` changes the engine's
/// parameters as asked, and `sync` writes them into the net's variables.
#[test]
fn updates_and_sync_reach_the_net() {
    let net = net("transformer:ln=rezero", Precision::F64);
    let mut ours = for_net::<f64>(&net, Options::repeated(BnMode::Eval)).unwrap();
    let x = ids();
    let want = Want {
        hidden: false,
        params: true,
        gram: false,
    };
    let fwd = ours.forward(x.view(), true).unwrap();
    let g = ours.backward(&fwd, 3, None, want).unwrap();
    let before: Vec<(String, f64)> = ours.param_norms();
    ours.update_params(&g, &mut |_, _, w, g| {
        w.iter_mut().zip(g).for_each(|(w, g)| *w -= 0.1 * g)
    })
    .unwrap();
    ours.sync().unwrap();
    // The candle net now holds the stepped weights: both agree again.
    let oracle = for_net::<f64>(&net, Options::once(BnMode::Eval).on_candle()).unwrap();
    let (a, b) = (
        ours.predict(x.view()).unwrap(),
        oracle.predict(x.view()).unwrap(),
    );
    assert!(rel(a.as_slice().unwrap(), b.as_slice().unwrap()) < 1e-12);
    let after = ours.param_norms();
    assert_eq!(before.len(), after.len());
    assert!(before.iter().zip(&after).any(|(b, a)| b.1 != a.1));
    let names: Vec<String> = net.parameters().into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        after.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>(),
        names
    );
}

//! A transformer behind the engine's interface: `for_net` hands it to
//! candle's autograd with the reason recorded, and the passes are laid out
//! as documented (rows of T·d hidden values, T·V outputs; the depth-L net
//! is the first L blocks and the head).

use gradscope_engine::{Kernels, Options, Want, fallbacks, for_net};
use gradscope_nets::{BnMode, Model, Net, Precision, Transformer, TransformerParams};
use ndarray::Array2;

fn net(arch: &str) -> Net {
    let p = TransformerParams {
        arch: arch.parse().unwrap(),
        depth: 3,
        width: 8,
        heads: 2,
        seq_len: 4,
        vocab: 5,
        ff_width: 0,
        precision: Precision::F64,
        seed: 3,
    };
    Net::Transformer(Transformer::new(&p.check().unwrap()).unwrap())
}

#[test]
fn a_transformer_runs_on_candle_with_the_reason_recorded() {
    let net = net("transformer:ln=pre");
    let engine = for_net::<f64>(&net, Options::once(BnMode::Eval)).unwrap();
    match engine.kernels() {
        Kernels::Candle { reason } => assert_eq!(reason, "attention is not an engine op yet"),
        k => panic!("{k:?}"),
    }
    assert!(
        fallbacks()
            .keys()
            .any(|k| k.starts_with("transformer:ln=pre depth 3"))
    );
    let x = Array2::from_shape_fn((2, 4), |(i, j)| ((i + 2 * j) % 5) as f64);
    let fwd = engine.forward(x.view(), true).unwrap();
    assert_eq!(fwd.hidden.len(), 4);
    assert!(fwd.hidden.iter().all(|h| h.dim() == (2, 4 * 8)));
    let out = engine.output(&fwd, 3).unwrap();
    assert_eq!(out.dim(), (2, 4 * 5));
    let whole = engine.predict(x.view()).unwrap();
    assert!((&out - &whole).iter().all(|d| d.abs() < 1e-12));
    let want = Want {
        hidden: true,
        params: true,
        gram: false,
    };
    let g = engine.backward(&fwd, 3, None, want).unwrap();
    assert!(g.unreached.is_empty(), "{:?}", g.unreached);
    assert_eq!(g.params.len(), net.parameters().len());
    // Token ids are not differentiable: ∂L/∂x is zero, ∂L/∂h₀ is not.
    assert!(g.input.iter().all(|&v| v == 0.0));
    assert!(g.hidden_norms[0] > 0.0);
    // The depth-1 net: the first block's parameters, the embeddings, the head.
    let g1 = engine.backward(&fwd, 1, None, want).unwrap();
    assert!(
        g1.params
            .iter()
            .all(|(n, _)| !n.starts_with("layers.1") && !n.starts_with("layers.2"))
    );
    assert!(g1.params.iter().any(|(n, _)| n.starts_with("layers.0")));
    assert_eq!(g1.hidden_norms.len(), 2);
}

//! Transformers against PyTorch on identical weights (f64):
//! `tests/fixtures/transformer_pytorch.json` holds small transformers of
//! every placement (post-LN, pre-LN, none, ReZero, xSkip(λ), rSkip(λ)) and the
//! no-skip, no-MLP and causal variants (weights, token ids, targets),
//! exported from here, and for each the loss (mean token cross-entropy),
//! the logits and every parameter gradient that
//! `benches/peer/peer_transformer.py` computed with PyTorch in f64, from the
//! definition and PyTorch's own `multi_head_attention_forward`.
//!
//! To make the fixture again (after a change to the nets it holds):
//!
//! ```sh
//! GRADSCOPE_TRANSFORMER_INPUTS=/tmp/tf_inputs.json cargo test -p gradscope-engine --test transformer_pytorch
//! python3 benches/peer/peer_transformer.py /tmp/tf_inputs.json crates/engine/tests/fixtures/transformer_pytorch.json
//! ```

mod common;
use common::perturb_vectors;

use gradscope_engine::{Options, Want, for_net};
use gradscope_nets::{BnMode, LnPlace, Model, Net, Precision, Transformer, TransformerParams};
use ndarray::Array2;
use serde_json::{Value, json};

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/transformer_pytorch.json"
);
const BATCH: usize = 3;
const SEQ: usize = 6;
const VOCAB: usize = 7;
const WIDTH: usize = 16;
const HEADS: usize = 2;

/// (arch, depth) of every case.
const CASES: [(&str, usize); 10] = [
    ("transformer", 2),
    ("transformer:ln=pre", 3),
    ("transformer:ln=none", 2),
    ("transformer:ln=rezero", 2),
    ("transformer:ln=xskip,lambda=2", 2),
    ("transformer:ln=pre,skip=off", 2),
    ("transformer:ln=post,mlp=off", 2),
    ("transformer:ln=pre,causal=on", 2),
    ("transformer:ln=none,skip=off,mlp=off,causal=on", 2),
    ("transformer:ln=rskip,lambda=2", 1),
];

/// A case's net in f64, its vector parameters (biases, γ, β, α) moved off
/// their initial 0 and 1 so that a dropped one would show.
fn build(arch: &str, depth: usize) -> Transformer {
    let p = TransformerParams {
        arch: arch.parse().unwrap(),
        depth,
        width: WIDTH,
        heads: HEADS,
        seq_len: SEQ,
        vocab: VOCAB,
        ff_width: 0,
        precision: Precision::F64,
        seed: 17,
    };
    let t = Transformer::new(&p.check().unwrap()).unwrap();
    perturb_vectors(&t.parameters());
    t
}

fn ids() -> Array2<f64> {
    Array2::from_shape_fn((BATCH, SEQ), |(i, t)| ((i * 5 + t * 3 + 2) % VOCAB) as f64)
}

fn targets() -> Vec<u32> {
    (0..BATCH * SEQ)
        .map(|k| ((k * 4 + 1) % VOCAB) as u32)
        .collect()
}

/// Mean cross-entropy over the B·T tokens of logits (B × T·V) and its
/// gradient (softmax − onehot)/(B·T), written here from the definition.
fn token_cross_entropy(logits: &Array2<f64>, y: &[u32]) -> (f64, Array2<f64>) {
    let n = y.len() as f64;
    let mut g = Array2::zeros(logits.raw_dim());
    let z = logits.as_slice().unwrap();
    let gs = g.as_slice_mut().unwrap();
    let mut loss = 0.0;
    for ((zr, gr), &t) in z.chunks(VOCAB).zip(gs.chunks_mut(VOCAB)).zip(y) {
        let m = zr.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let s: f64 = zr.iter().map(|v| (v - m).exp()).sum();
        loss += s.ln() + m - zr[t as usize];
        for (k, (gk, zk)) in gr.iter_mut().zip(zr).enumerate() {
            *gk = ((zk - m).exp() / s - if k == t as usize { 1.0 } else { 0.0 }) / n;
        }
    }
    (loss / n, g)
}

fn export(arch: &str, depth: usize) -> Value {
    let t = build(arch, depth);
    let a = t.spec().arch;
    let tensors: serde_json::Map<String, Value> = t
        .parameters()
        .iter()
        .map(|(name, var)| {
            let v = var.as_tensor();
            let data = v.flatten_all().unwrap().to_vec1::<f64>().unwrap();
            (name.clone(), json!({ "shape": v.dims(), "values": data }))
        })
        .collect();
    let order: Vec<String> = t.parameters().into_iter().map(|(n, _)| n).collect();
    let lambda = match a.ln {
        LnPlace::XSkip { lambda } => lambda,
        LnPlace::RSkip { recursions } => recursions as f64,
        _ => 1.0,
    };
    json!({
        "net": {
            "arch": arch, "ln": a.ln.name(), "lambda": lambda, "skip": a.skip, "mlp": a.mlp,
            "causal": a.causal, "depth": depth, "width": WIDTH, "heads": HEADS,
            "seq_len": SEQ, "vocab": VOCAB,
        },
        "tensors": tensors,
        "parameters": order,
        "ids": ids().iter().map(|&v| v as u32).collect::<Vec<_>>(),
        "targets": targets(),
    })
}

fn fixture() -> Vec<Value> {
    let text = std::fs::read_to_string(FIXTURE).expect("the fixture is in the repository");
    let v: Value = serde_json::from_str(&text).unwrap();
    v["cases"].as_array().unwrap().clone()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .expect("an array")
        .iter()
        .map(|x| x.as_f64().expect("a number"))
        .collect()
}

/// ‖a − b‖ / ‖b‖.
fn relative_error(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    let d: f64 = a.iter().zip(b).map(|(a, b)| (a - b) * (a - b)).sum();
    let n: f64 = b.iter().map(|b| b * b).sum();
    (d / n).sqrt()
}

/// The fixture was computed on exactly the nets, ids and targets built here
/// now: every tensor equal bit for bit (JSON keeps f64 exactly), so a
/// changed initialisation is caught. With `GRADSCOPE_TRANSFORMER_INPUTS`
/// set, writes them for the peer.
#[test]
fn the_fixture_holds_the_nets_built_here() {
    let now: Vec<Value> = CASES.iter().map(|&(a, d)| export(a, d)).collect();
    if let Ok(path) = std::env::var("GRADSCOPE_TRANSFORMER_INPUTS") {
        std::fs::write(
            &path,
            serde_json::to_string(&json!({ "cases": now })).unwrap(),
        )
        .unwrap();
    }
    let stored = fixture();
    assert_eq!(stored.len(), now.len(), "one stored case per net");
    for (s, n) in stored.iter().zip(&now) {
        for key in ["net", "tensors", "parameters", "ids", "targets"] {
            assert_eq!(s[key], n[key], "{}: `{key}` differs", n["net"]["arch"]);
        }
    }
}

/// Loss, logits and every parameter gradient equal PyTorch's on the same
/// weights to 1e-12 relative (f64: both exact to rounding, the sums in
/// different orders), on the engine `for_net` picks and on candle.
#[test]
fn loss_logits_and_gradients_equal_pytorch() {
    let stored = fixture();
    for (s, &(arch, depth)) in stored.iter().zip(&CASES) {
        let net = Net::Transformer(build(arch, depth));
        let torch = &s["pytorch"];
        for opts in [
            Options::once(BnMode::Eval),
            Options::once(BnMode::Eval).on_candle(),
        ] {
            let engine = for_net::<f64>(&net, opts).unwrap();
            let what = format!("{arch} on {:?}", engine.kernels());
            let fwd = engine.forward(ids().view(), true).unwrap();
            let out = engine.output(&fwd, depth).unwrap();
            let (loss, g) = token_cross_entropy(&out, &targets());
            let want = Want {
                hidden: false,
                params: true,
                gram: false,
            };
            let grads = engine.backward(&fwd, depth, Some(g.view()), want).unwrap();
            let t_loss = torch["loss"].as_f64().unwrap();
            let e = (loss - t_loss).abs() / t_loss.abs();
            assert!(e < 1e-13, "{what}: loss {loss} vs {t_loss}");
            let e = relative_error(out.as_slice().unwrap(), &floats(&torch["logits"]));
            assert!(e < 1e-12, "{what}: logits differ by {e:.2e}");
            let mut worst = 0.0f64;
            assert_eq!(grads.params.len(), net.parameters().len(), "{what}");
            for (name, ours) in &grads.params {
                let theirs = floats(&torch["gradients"][name]);
                let e = relative_error(ours, &theirs);
                assert!(e < 1e-12, "{what}: ∂L/∂{name} differs by {e:.2e}");
                worst = worst.max(e);
            }
            eprintln!("{what}: loss {loss:.6}, worst gradient {worst:.1e} relative");
        }
    }
}

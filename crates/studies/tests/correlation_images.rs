//! The correlation study on images: the per-example Gram matrices of conv
//! nets it builds its cosines from are the dot products of per-example
//! gradients computed one example at a time (f64), those gradients are
//! central finite differences of the example's loss, the written cosine
//! matrices have a unit diagonal and the summary's means are theirs, and
//! the image part leaves the MLP part's files as they were.

use candle_core::{Device, Tensor};
use gradscope_engine::{Engine, Options, Real, Task, Want};
use gradscope_nets::{BnMode, Model, Net, Precision};
use gradscope_spec::{Arch, ConvArch, ModelArch};
use gradscope_studies::correlation::images::{block_grams, per_example_grams};
use gradscope_studies::correlation::{CorrelationConfig, CorrelationParams};
use gradscope_studies::{Params, RunOptions};
use gradscope_train::cross_entropy_gradient;
use ndarray::{Array2, ArrayView2};

const PLAIN: ModelArch = ModelArch::Conv(ConvArch::PLAIN);
const RESNET: ModelArch = ModelArch::Conv(ConvArch::RESNET);

/// The image part beside a tiny MLP part (the study runs at least one arch).
fn on_images(depths: Vec<usize>, batch: usize) -> CorrelationParams {
    CorrelationParams {
        archs: vec![Arch::PLAIN],
        depths: vec![1],
        width: 8,
        side: 8,
        examples: 6,
        distance_bins: 2,
        seeds: 2,
        dtype: Precision::F64,
        image_archs: vec![PLAIN, RESNET],
        image_depths: depths,
        image_batch: batch,
        ..CorrelationParams::quick()
    }
}

/// Example losses and ∂(Σ_{i ∈ only} ℓᵢ)/∂θ per parameter tensor: with
/// `only = Some(i)` the loss gradient of every other row is zero, so the
/// backward pass gives example i's own gradient.
struct Gradient<'a> {
    x: ArrayView2<'a, f64>,
    y: &'a [u32],
    only: Option<usize>,
}

type Params_ = Vec<(String, Vec<f64>)>;

impl Task for Gradient<'_> {
    type Output = (Vec<f64>, Params_);
    fn run<T: Real>(self, engine: &mut dyn Engine<T>) -> gradscope_engine::Result<Self::Output> {
        let depth = engine.depth();
        let fwd = engine.forward(self.x.mapv(T::of).view(), true)?;
        let mut d = engine.output(&fwd, depth)?;
        let losses = cross_entropy_gradient(&mut d, self.y);
        if let Some(i) = self.only {
            for (r, mut row) in d.rows_mut().into_iter().enumerate() {
                if r != i {
                    row.fill(T::zero());
                }
            }
        }
        let want = Want {
            params: true,
            ..Want::default()
        };
        let g = engine.backward(&fwd, depth, Some(d.view()), want)?;
        let params = g
            .params
            .into_iter()
            .map(|(n, v)| (n, v.into_iter().map(Real::f64).collect()))
            .collect();
        Ok((losses, params))
    }
}

fn gradient(
    net: &Net,
    x: ArrayView2<f64>,
    y: &[u32],
    only: Option<usize>,
    mode: BnMode,
) -> (Vec<f64>, Params_) {
    gradscope_engine::run(net, Options::once(mode), Gradient { x, y, only }).unwrap()
}

/// The layer a parameter tensor belongs to (`layer1.0.conv1` of `layer1.0.conv1.weight`).
fn layer(param: &str) -> &str {
    param.rsplit_once('.').unwrap().0
}

/// ⟨gᵢ, gⱼ⟩ per layer from per-example gradients `g[i]`.
fn dot_grams(g: &[Params_]) -> Vec<(String, Array2<f64>)> {
    let b = g.len();
    let mut out: Vec<(String, Array2<f64>)> = Vec::new();
    for (k, (name, _)) in g[0].iter().enumerate() {
        let m = Array2::from_shape_fn((b, b), |(i, j)| {
            g[i][k].1.iter().zip(&g[j][k].1).map(|(u, v)| u * v).sum()
        });
        match out.last_mut() {
            Some((l, acc)) if l == layer(name) => *acc += &m,
            _ => out.push((layer(name).to_string(), m)),
        }
    }
    out
}

/// Largest |a − b| over the largest |a| of two lists of per-layer Grams with the same names.
fn relative_error(a: &[(String, Array2<f64>)], b: &[(String, Array2<f64>)]) -> f64 {
    assert_eq!(
        a.iter().map(|(n, _)| n).collect::<Vec<_>>(),
        b.iter().map(|(n, _)| n).collect::<Vec<_>>()
    );
    let (mut err, mut scale) = (0.0f64, 0.0f64);
    for ((_, x), (_, y)) in a.iter().zip(b) {
        scale = x.iter().fold(scale, |m, v| m.max(v.abs()));
        err = (x - y).iter().fold(err, |m, v| m.max(v.abs()));
    }
    err / scale
}

fn setup(c: &CorrelationConfig) -> (Array2<f64>, Vec<u32>) {
    let (x, y) = c.images().unwrap().batch();
    (x.clone(), y.to_vec())
}

/// In the study's mode (BN on the batch's statistics, held constant), the
/// Gram of each layer equals the dot products of the per-example gradients
/// from B backward passes, each with one example's loss gradient.
#[test]
fn per_sample_grams_are_dot_products_of_one_example_gradients() {
    let c = on_images(vec![8], 6).check().unwrap();
    let (x, y) = setup(&c);
    for arch in [PLAIN, RESNET] {
        let net = c.image_net(arch, 8, 0).unwrap();
        let grams =
            per_example_grams(&net, x.view(), &y, Options::once(BnMode::PerSample)).unwrap();
        let g: Vec<Params_> = (0..y.len())
            .map(|i| gradient(&net, x.view(), &y, Some(i), BnMode::PerSample).1)
            .collect();
        let err = relative_error(&grams, &dot_grams(&g));
        assert!(err <= 1e-10, "{arch}: {err}");
        // Blocks: the stem, three blocks of a depth-8 net, the classifier.
        let blocks: Vec<String> = block_grams(&grams).into_iter().map(|(n, _)| n).collect();
        assert_eq!(blocks, ["stem", "layer1.0", "layer2.0", "layer3.0", "head"]);
    }
}

/// With BN on running statistics (a fixed affine map) an example's gradient
/// is that of a batch of one: the batch's Grams equal the dot products of
/// gradients from B engine passes on one image each.
#[test]
fn eval_grams_are_dot_products_of_batch_of_one_gradients() {
    let c = on_images(vec![8], 6).check().unwrap();
    let (x, y) = setup(&c);
    for arch in [PLAIN, RESNET] {
        let net = c.image_net(arch, 8, 1).unwrap();
        let grams = per_example_grams(&net, x.view(), &y, Options::once(BnMode::Eval)).unwrap();
        let g: Vec<Params_> = (0..y.len())
            .map(|i| {
                let xi = x.slice(ndarray::s![i..i + 1, ..]);
                gradient(&net, xi, &y[i..i + 1], None, BnMode::Eval).1
            })
            .collect();
        let err = relative_error(&grams, &dot_grams(&g));
        assert!(err <= 1e-10, "{arch}: {err}");
    }
}

/// Entry `k` of parameter `name` of `net` set to `v`; the old value.
fn set_entry(net: &Net, name: &str, k: usize, v: f64) -> f64 {
    let (_, var) = net
        .parameters()
        .into_iter()
        .find(|(n, _)| n == name)
        .unwrap();
    let mut vals = var.flatten_all().unwrap().to_vec1::<f64>().unwrap();
    let old = vals[k];
    vals[k] = v;
    let t = Tensor::from_vec(vals, var.dims(), &Device::Cpu).unwrap();
    var.set(&t).unwrap();
    old
}

/// (ℓ(θ + h) − ℓ(θ − h))/2h for entry `k` of `name`, ℓ = `loss()`.
fn central_difference(net: &Net, name: &str, k: usize, loss: &dyn Fn() -> f64) -> f64 {
    let h = 1e-5;
    let w = set_entry(net, name, k, 0.0);
    set_entry(net, name, k, w + h);
    let up = loss();
    set_entry(net, name, k, w - h);
    let down = loss();
    set_entry(net, name, k, w);
    (up - down) / (2.0 * h)
}

/// An entry of an example's gradient is the central difference of that
/// example's loss: through every layer with BN on running statistics (a
/// batch of one), and for the classifier (after the last BN, so the batch's
/// statistics do not move) in the study's per-sample mode.
#[test]
fn one_example_gradients_are_central_differences() {
    let c = on_images(vec![8], 6).check().unwrap();
    let (x, y) = setup(&c);
    let i = 3;
    for arch in [PLAIN, RESNET] {
        let net = c.image_net(arch, 8, 0).unwrap();
        let xi = x.slice(ndarray::s![i..i + 1, ..]);
        let (_, g) = gradient(&net, xi, &y[i..i + 1], None, BnMode::Eval);
        // Each tensor's largest entry (a fixed index may sit behind a dead ReLU).
        for name in [
            "conv1.weight",
            "layer2.0.conv1.weight",
            "layer3.0.bn2.weight",
            "fc.weight",
        ] {
            let v = &g.iter().find(|(n, _)| n == name).unwrap().1;
            let k = (0..v.len())
                .max_by(|&a, &b| v[a].abs().total_cmp(&v[b].abs()))
                .unwrap();
            let gk = v[k];
            let fd = central_difference(&net, name, k, &|| {
                gradient(&net, xi, &y[i..i + 1], None, BnMode::Eval).0[0]
            });
            assert!(
                (gk - fd).abs() <= 1e-6 * gk.abs().max(1e-3),
                "{arch} eval {name}[{k}]: {gk} vs {fd}"
            );
        }
        let (_, g) = gradient(&net, x.view(), &y, Some(i), BnMode::PerSample);
        for k in [0, 123, 639] {
            let gk = g.iter().find(|(n, _)| n == "fc.weight").unwrap().1[k];
            let fd = central_difference(&net, "fc.weight", k, &|| {
                gradient(&net, x.view(), &y, None, BnMode::PerSample).0[i]
            });
            assert!(
                (gk - fd).abs() <= 1e-6 * gk.abs().max(1e-3),
                "{arch} per-sample fc.weight[{k}]: {gk} vs {fd}"
            );
        }
    }
}

/// The written cosine matrices have a unit diagonal, and the summary's
/// seed-0 means over all, same-class and different-class pairs are theirs.
#[test]
fn written_cosines_have_a_unit_diagonal_and_the_summarys_means() {
    let c = on_images(vec![8, 14], 12).check().unwrap();
    let r = c.run(&RunOptions::with_threads(2)).unwrap();
    let im = r.summary.images.as_ref().unwrap();
    let y = &im.labels;
    assert!(y.windows(2).all(|w| w[0] <= w[1]), "sorted by class: {y:?}");
    assert_eq!(r.image_cosines.dim(), (2, 2, 12, 12));
    for (k, res) in im.results.iter().enumerate() {
        let m = r.image_cosines.slice(ndarray::s![k / 2, k % 2, .., ..]);
        let (mut all, mut same, mut diff) = (vec![], vec![], vec![]);
        for i in 0..12 {
            assert!((m[[i, i]] - 1.0).abs() < 1e-6, "{} {}", res.arch, m[[i, i]]);
            for j in 0..12 {
                assert!((m[[i, j]] - m[[j, i]]).abs() < 1e-6);
                assert!(m[[i, j]].abs() <= 1.0 + 1e-6);
                if i != j {
                    let v = f64::from(m[[i, j]]);
                    all.push(v);
                    if y[i] == y[j] { &mut same } else { &mut diff }.push(v);
                }
            }
        }
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        let s0 = &res.per_seed[0];
        assert!((s0.mean_cosine - mean(&all)).abs() < 1e-6);
        assert!((s0.same_class - mean(&same)).abs() < 1e-6);
        assert!((s0.different_class - mean(&diff)).abs() < 1e-6);
        assert_eq!(res.per_seed.len(), 2);
    }
}

/// With no image archs the study writes the same files as before, byte
/// for byte (the summary aside, whose config lists the image settings and
/// provenance the time), and no image file.
#[test]
fn no_image_archs_leaves_the_other_files_as_they_were() {
    let with = on_images(vec![8], 6);
    let without = CorrelationParams {
        image_archs: vec![],
        ..with.clone()
    };
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    for (p, d) in [&with, &without].iter().zip(&dirs) {
        let r = p
            .check()
            .unwrap()
            .run(&RunOptions::with_threads(2))
            .unwrap();
        r.write(d.path()).unwrap();
    }
    let names = |d: &tempfile::TempDir| {
        let mut v: Vec<String> = std::fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    };
    let (a, b) = (names(&dirs[0]), names(&dirs[1]));
    assert!(b.iter().all(|n| !n.starts_with("images_")), "{b:?}");
    let shared: Vec<&String> = a.iter().filter(|n| !n.starts_with("images_")).collect();
    assert_eq!(shared, b.iter().collect::<Vec<_>>());
    assert!(a.iter().any(|n| n.starts_with("images_")));
    for n in shared.into_iter().filter(|n| *n != "summary.json") {
        let read = |d: &tempfile::TempDir| std::fs::read(d.path().join(n)).unwrap();
        assert!(read(&dirs[0]) == read(&dirs[1]), "{n} differs");
    }
}

//! The independent decision of each claim, by id, from CSV files.

use std::path::Path;

use gradscope_contract::norms::critical_sigma_w2;
use gradscope_report::norms::claims as nc;
use gradscope_report::shattered::claims as sc;
use gradscope_report::skips::claims as kc;
use gradscope_spec::Activation;

use crate::verify::{Csv, num};

/// The claims decided from the raw arrays (NPY), which a clean checkout
/// does not hold: re-decided on fresh runs only.
pub const NEEDS_ARRAYS: [&str; 2] = ["shattered/law-feedforward", "shattered/law-resnet-bn"];

/// Whether claim `id` holds on the study folder `dir`; `None` for an unknown id.
pub fn decide(dir: &Path, id: &str) -> Option<bool> {
    let (study, claim) = id.split_once('/')?;
    match study {
        "norms" => norms(dir, claim),
        "shattered" => shattered(dir, claim),
        "skips" => skips(dir, claim),
        "ensemble" => ensemble(dir, claim),
        "training" | "degradation" => training(dir, claim),
        "correlation" => correlation(dir, claim),
        "landscape" => landscape(dir, claim),
        "curvature" => curvature(dir, claim),
        "transformers" => transformers(dir, claim),
        "trainability" => trainability(dir, claim),
        _ => None,
    }
}

fn within(v: f64, centre: f64, rel: f64) -> bool {
    (v - centre).abs() <= centre * rel
}

fn norms(dir: &Path, claim: &str) -> Option<bool> {
    if let Some(c) = claim.strip_prefix("images-") {
        return norms_images(dir, c);
    }
    let ratios = Csv::read(&dir.join("ratios.csv"));
    let ratio = |arch: &str, act: &str, s2: &str| {
        ratios
            .rows(&[("arch", arch), ("activation", act), ("sigma_w2", s2)])
            .into_iter()
            .map(|r| num(r, "measured_ratio_mean"))
            .next()
            .unwrap()
    };
    let sigmoid_under_bound = || {
        ratios
            .rows(&[("arch", "plain"), ("activation", "sigmoid")])
            .into_iter()
            .all(|r| num(r, "measured_ratio_mean") <= num(r, "sigma_w2").sqrt() / 4.0)
    };
    let jac = || Csv::read(&dir.join("jacobian.csv"));
    Some(match claim {
        "mean-field" => ratios
            .0
            .iter()
            .filter(|r| num(r, "predicted_ratio").is_finite())
            .all(|r| {
                (num(r, "measured_ratio_mean") / num(r, "predicted_ratio") - 1.0).abs()
                    <= nc::MEAN_FIELD_TOLERANCE
            }),
        "relu-he-keeps" | "relu-he-flat" => {
            within(ratio("plain", "relu", "2"), 1.0, nc::FACTOR_TOLERANCE)
        }
        "bn-explosion-rate" => ratios
            .rows(&[("arch", "plain-bn")])
            .into_iter()
            .filter_map(|r| {
                let act: Activation = r["activation"].parse().unwrap();
                Some((num(r, "measured_ratio_mean"), nc::bn_rate(act)?))
            })
            .all(|(m, t)| within(m / t, 1.0, nc::BN_TOLERANCE)),
        "relu-xavier-halves" => within(
            ratio("plain", "relu", "1").powi(2),
            0.5,
            nc::FACTOR_TOLERANCE,
        ),
        "sigmoid-bound" | "sigmoid-factor" => sigmoid_under_bound(),
        "resnet-he-root2" => within(
            ratio("resnet", "relu", "2"),
            std::f64::consts::SQRT_2,
            nc::FACTOR_TOLERANCE,
        ),
        "phase-plain-critical" | "phase-residual-explodes" => {
            let residual = claim == "phase-residual-explodes";
            let phase = Csv::read(&dir.join("phase.csv"));
            let deepest = phase.0.iter().map(|r| num(r, "depth")).fold(0.0, f64::max);
            phase
                .0
                .iter()
                .filter(|r| r["residual"] == residual.to_string() && num(r, "depth") == deepest)
                .all(|r| {
                    let act: Activation = r["activation"].parse().unwrap();
                    let (s2, v) = (num(r, "sigma_w2"), num(r, "log10_ratio"));
                    let crit = critical_sigma_w2(act);
                    if residual {
                        v >= 0.0
                    } else if s2 < crit / nc::NEAR_CRITICAL {
                        v <= 0.0
                    } else if s2 > crit * nc::NEAR_CRITICAL {
                        v >= 0.0
                    } else {
                        true
                    }
                })
        }
        "chain-closed-form" => Csv::read(&dir.join("chain.csv")).0.iter().all(|r| {
            let (a, c) = (num(r, "autograd"), num(r, "closed_form"));
            c == 0.0 || ((a - c) / c).abs() <= 1e-12
        }),
        "orthogonal-isometry" | "orthogonal-linear-isometry" => jac()
            .rows(&[
                ("residual", "false"),
                ("activation", "identity"),
                ("init", "orthogonal"),
            ])
            .into_iter()
            .all(|r| {
                (num(r, "max") - 1.0).abs() <= nc::ISOMETRY_TOLERANCE
                    && (num(r, "min") - 1.0).abs() <= nc::ISOMETRY_TOLERANCE
            }),
        "tanh-orthogonal-narrower" => {
            let j = jac();
            let spread = |init: &str| {
                let rows = j.rows(&[
                    ("residual", "false"),
                    ("activation", "tanh"),
                    ("init", init),
                ]);
                let r = rows
                    .iter()
                    .max_by(|a, b| num(a, "depth").total_cmp(&num(b, "depth")))
                    .unwrap();
                (num(r, "max") / num(r, "min")).log10()
            };
            spread("gaussian") - spread("orthogonal") >= 1.0
        }
        "relu-not-isometric" => jac()
            .rows(&[("residual", "false"), ("activation", "relu")])
            .into_iter()
            .all(|r| num(r, "min") <= 1e-12),
        "residual-doubles" => {
            let j = jac();
            let mut ok = true;
            for act in ["identity", "relu", "tanh", "sigmoid"] {
                for init in ["gaussian", "orthogonal"] {
                    let mut rows =
                        j.rows(&[("residual", "true"), ("activation", act), ("init", init)]);
                    rows.sort_by(|a, b| num(a, "depth").total_cmp(&num(b, "depth")));
                    if let (Some(a), Some(b)) = (rows.first(), rows.last())
                        && num(b, "depth") > num(a, "depth")
                    {
                        let f = (num(b, "mean_sq") / num(a, "mean_sq"))
                            .powf(1.0 / (num(b, "depth") - num(a, "depth")));
                        ok &= within(f, 2.0, nc::FACTOR_TOLERANCE);
                    }
                }
            }
            ok
        }
        _ => return None,
    })
}

/// The norms study's image claims, from `images_per_seed.csv` alone: the
/// per-block growth refitted by hand (ordinary least squares of the seed mean
/// of ln ‖∂L/∂h_l‖ on l = 1 … blocks, Student-t interval of the slope) and
/// the first-block / last-block weight-gradient ratio per seed.
fn norms_images(dir: &Path, claim: &str) -> Option<bool> {
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("summary.json")).unwrap()).unwrap();
    let list = |k: &str| summary["config"][k].as_array().unwrap().clone();
    let archs: Vec<String> = list("image_archs")
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    let depths: Vec<String> = list("image_depths")
        .iter()
        .map(|d| d.as_u64().unwrap().to_string())
        .collect();
    let residual = |a: &String| {
        a.parse::<gradscope_spec::ModelArch>()
            .unwrap()
            .is_residual()
    };
    let plain = &archs[archs.iter().position(|a| !residual(a))?];
    let res = &archs[archs.iter().position(residual)?];
    let seeds = Csv::read(&dir.join("images_per_seed.csv"));
    // (growth, lo, hi) of e^(−slope).
    let growth = |arch: &str, depth: &str| {
        let rows = seeds.rows(&[("arch", arch), ("depth", depth), ("kind", "hidden")]);
        let blocks = rows.iter().map(|r| num(r, "index") as usize).max().unwrap();
        let (x, y): (Vec<f64>, Vec<f64>) = (1..=blocks)
            .map(|l| {
                let v: Vec<f64> = rows
                    .iter()
                    .filter(|r| num(r, "index") as usize == l)
                    .map(|r| num(r, "grad_norm").ln())
                    .collect();
                (l as f64, v.iter().sum::<f64>() / v.len() as f64)
            })
            .unzip();
        let n = x.len() as f64;
        let (mx, my) = (x.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
        let sxx: f64 = x.iter().map(|a| (a - mx).powi(2)).sum();
        let slope = x
            .iter()
            .zip(&y)
            .map(|(a, b)| (a - mx) * (b - my))
            .sum::<f64>()
            / sxx;
        let rss: f64 = x
            .iter()
            .zip(&y)
            .map(|(a, b)| (b - my - slope * (a - mx)).powi(2))
            .sum();
        let se = (rss / (n - 2.0) / sxx).sqrt();
        let t = gradscope_stats::student_t_quantile(0.975, n - 2.0);
        (
            (-slope).exp(),
            (-slope - t * se).exp(),
            (-slope + t * se).exp(),
        )
    };
    let weight_ratio = |arch: &str, depth: &str| {
        let rows = seeds.rows(&[("arch", arch), ("depth", depth), ("kind", "weight")]);
        let blocks = seeds
            .rows(&[("arch", arch), ("depth", depth), ("kind", "hidden")])
            .iter()
            .map(|r| num(r, "index") as usize)
            .max()
            .unwrap();
        let n_seeds = rows.iter().map(|r| num(r, "seed") as usize).max().unwrap() + 1;
        let ratios: Vec<f64> = (0..n_seeds)
            .map(|s| {
                let mine: Vec<_> = rows
                    .iter()
                    .filter(|r| num(r, "seed") as usize == s)
                    .collect();
                let at = |b: usize, first: bool| {
                    let mut it = mine.iter().filter(|r| num(r, "block") as usize == b);
                    let r = if first { it.next() } else { it.next_back() };
                    num(r.unwrap(), "grad_norm")
                };
                at(1, true) / at(blocks, false)
            })
            .collect();
        ratios.iter().sum::<f64>() / ratios.len() as f64
    };
    let deepest = depths.last()?;
    Some(match claim {
        "plain-grows-faster" => depths.iter().all(|d| growth(plain, d).0 > growth(res, d).0),
        "growth-apart" => growth(plain, deepest).1 > growth(res, deepest).2,
        "weight-ratio" => weight_ratio(plain, deepest) > weight_ratio(res, deepest),
        _ => return None,
    })
}

/// Mean, standard error of one statistic of an arch at a depth.
struct Stat {
    mean: f64,
    se: f64,
}

/// `a` above `b` by more than `z` combined standard errors.
fn above(a: &Stat, b: &Stat, z: f64) -> bool {
    a.mean - b.mean >= z * (a.se.powi(2) + b.se.powi(2)).sqrt()
}

/// The nets a shattered-study page talks about: plain-bn, resnet-bn and
/// resnet1-bn, else the first feedforward and residual nets.
fn shattered_picks(archs: &[String]) -> (Option<usize>, Option<usize>, Option<usize>) {
    let find = |n: &str| archs.iter().position(|a| a == n);
    let residual = |a: &String| a.parse::<gradscope_spec::Arch>().unwrap().is_residual();
    let ff = find("plain-bn").or_else(|| archs.iter().position(|a| !residual(a)));
    let res = find("resnet-bn").or_else(|| archs.iter().position(residual));
    let res1 = find("resnet1-bn").filter(|&i| Some(i) != res);
    (ff, res, res1)
}

/// The image part's claims: plain against residual image nets, from
/// `images_summary.csv` and the config's image archs and depths.
fn shattered_images(dir: &Path, summary: &serde_json::Value, claim: &str) -> Option<bool> {
    let list = |k: &str| summary["config"][k].as_array().unwrap().clone();
    let archs: Vec<String> = list("image_archs")
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    let depths: Vec<f64> = list("image_depths")
        .iter()
        .map(|d| d.as_f64().unwrap())
        .collect();
    let residual = |a: &String| {
        a.parse::<gradscope_spec::ModelArch>()
            .unwrap()
            .is_residual()
    };
    let plain = archs.iter().position(|a| !residual(a))?;
    let res = archs.iter().position(residual)?;
    let table = Csv::read(&dir.join("images_summary.csv"));
    let stat = |a: usize, depth: f64| {
        let r = table
            .0
            .iter()
            .find(|r| r["arch"] == archs[a] && num(r, "depth") == depth)
            .unwrap();
        let n = num(r, "seeds") - num(r, "excluded");
        Stat {
            mean: num(r, "r1_mean"),
            se: num(r, "r1_std") / n.max(1.0).sqrt(),
        }
    };
    let (lo, hi) = (depths[0], *depths.last().unwrap());
    if claim.starts_with("images-plane-") {
        return shattered_plane(dir, &archs[plain], &archs[res], hi, claim);
    }
    Some(match claim {
        "images-plain-falls-faster" => {
            stat(plain, lo).mean - stat(plain, hi).mean > stat(res, lo).mean - stat(res, hi).mean
        }
        "images-residual-above-plain" => above(&stat(res, hi), &stat(plain, hi), sc::MARGIN_SE),
        _ => return None,
    })
}

/// The plane's claims, from `images_plane_summary.csv`: at the deepest
/// depth, on both pictures (∂f/∂a, ∂f/∂b), the residual net's r₁ clearly
/// above the plain net's, its radial slope clearly below.
fn shattered_plane(dir: &Path, plain: &str, res: &str, deepest: f64, claim: &str) -> Option<bool> {
    let table = Csv::read(&dir.join("images_plane_summary.csv"));
    let stat = |arch: &str, picture: &str, q: &str| {
        let r = table
            .0
            .iter()
            .find(|r| r["arch"] == arch && r["picture"] == picture && num(r, "depth") == deepest)
            .unwrap();
        Stat {
            mean: num(r, &format!("{q}_mean")),
            se: num(r, &format!("{q}_std")) / num(r, &format!("{q}_n")).max(1.0).sqrt(),
        }
    };
    let pictures = ["a", "b"];
    Some(match claim {
        "images-plane-residual-smoother" => pictures
            .iter()
            .all(|k| above(&stat(res, k, "r1"), &stat(plain, k, "r1"), sc::MARGIN_SE)),
        "images-plane-residual-steeper" => pictures.iter().all(|k| {
            above(
                &stat(plain, k, "slope"),
                &stat(res, k, "slope"),
                sc::MARGIN_SE,
            )
        }),
        _ => return None,
    })
}

fn shattered(dir: &Path, claim: &str) -> Option<bool> {
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("summary.json")).unwrap()).unwrap();
    if claim.starts_with("images-") {
        return shattered_images(dir, &summary, claim);
    }
    let archs: Vec<String> = summary["config"]["archs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    let depths: Vec<f64> = summary["config"]["depths"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_f64().unwrap())
        .collect();
    let reference = |i: usize, q: &str| summary["references"][i][q]["mean"].as_f64().unwrap();
    let (white_r1, white_slope, brown_slope) = (
        reference(0, "adjacent_correlation"),
        reference(0, "spectral_slope"),
        reference(1, "spectral_slope"),
    );
    let table = Csv::read(&dir.join("summary.csv"));
    let stat = |a: usize, depth: f64, q: &str| {
        let r = table
            .0
            .iter()
            .find(|r| r["arch"] == archs[a] && num(r, "depth") == depth)
            .unwrap();
        let n = num(r, "seeds") - num(r, "excluded");
        Stat {
            mean: num(r, &format!("{q}_mean")),
            se: num(r, &format!("{q}_std")) / n.max(1.0).sqrt(),
        }
    };
    let d16 = *depths
        .iter()
        .min_by(|a, b| (*a - 16.0).abs().total_cmp(&(*b - 16.0).abs()))
        .unwrap();
    let dmax = *depths.last().unwrap();
    let (ff, res, res1) = shattered_picks(&archs);
    let brownish = |a: usize| {
        let s = stat(a, dmax, "slope").mean;
        (s - brown_slope).abs() < (s - white_slope).abs()
    };
    Some(match claim {
        "feedforward-shatters" => (stat(ff?, d16, "r1").mean - white_r1).abs() <= sc::WHITE_BAND,
        "residual-above-feedforward" => {
            above(&stat(res?, d16, "r1"), &stat(ff?, d16, "r1"), sc::MARGIN_SE)
        }
        "deep-feedforward-white" => !brownish(ff?),
        "residual-brown" => brownish(res?),
        "one-layer-branch-brown" => brownish(res1?),
        "two-layer-branch-rougher" => above(
            &stat(res1?, dmax, "r1"),
            &stat(res?, dmax, "r1"),
            sc::MARGIN_SE,
        ),
        "ordering" => {
            let (ff, res) = (ff?, res?);
            depths
                .iter()
                .all(|&d| !above(&stat(ff, d, "r1"), &stat(res, d, "r1"), sc::MARGIN_SE))
        }
        "residual-deep-white" => (stat(res?, dmax, "r1").mean - white_r1).abs() <= sc::WHITE_BAND,
        "law-feedforward" | "law-resnet-bn" => {
            let (a, law) = if claim == "law-feedforward" {
                (ff?, gradscope_stats::DecayLaw::Exponential)
            } else {
                (res?, gradscope_stats::DecayLaw::PowerLaw)
            };
            law_holds(dir, a, law)
        }
        "residual-spectrum-steeper" => above(
            &stat(ff?, dmax, "slope"),
            &stat(res?, dmax, "slope"),
            sc::MARGIN_SE,
        ),
        _ => return None,
    })
}

/// A JSON file as a value.
fn json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// Mean and standard error of a summarised statistic (`{mean, std, n}`).
fn stat_of(v: &serde_json::Value) -> Stat {
    let n = v["n"].as_f64().unwrap_or(1.0).max(1.0);
    Stat {
        mean: v["mean"].as_f64().unwrap_or(f64::NAN),
        se: v["std"].as_f64().unwrap_or(f64::NAN) / n.sqrt(),
    }
}

fn skips(dir: &Path, claim: &str) -> Option<bool> {
    let s = json(&dir.join("summary.json"));
    let compare = json(&dir.join("compare/summary.json"));
    let white_r1 = compare["references"][0]["adjacent_correlation"]["mean"]
        .as_f64()
        .unwrap();
    let depths = s["config"]["depths"].as_array().unwrap();
    let deepest = depths.last().unwrap().as_u64().unwrap();
    let rows: Vec<&serde_json::Value> = s["compare"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["depth"].as_u64() == Some(deepest))
        .collect();
    let sweep = s["sweep"].as_array().unwrap();
    let family = |f: &str| -> Vec<&serde_json::Value> {
        sweep.iter().filter(|r| r["family"] == f).collect()
    };
    let factor = |r: &serde_json::Value| r["gradient_growth"]["mean"].as_f64().unwrap();
    let near = |v: f64, t: f64| (v - t).abs() <= t * kc::FACTOR_TOLERANCE;
    let at_one =
        |rows: &[&serde_json::Value]| !rows.is_empty() && rows.iter().all(|r| near(factor(r), 1.0));
    let rises = |rows: &[&serde_json::Value]| {
        rows.len() > 1
            && above(
                &stat_of(&rows[rows.len() - 1]["adjacent_correlation"]),
                &stat_of(&rows[0]["adjacent_correlation"]),
                kc::MARGIN_SE,
            )
    };
    let xs = family("xskip");
    let mean_field = !xs.is_empty()
        && xs
            .iter()
            .all(|r| near(factor(r), r["mean_field_growth"].as_f64().unwrap()));
    let normalised: Vec<Vec<&serde_json::Value>> = ["xskip-ln", "rskip-ln"]
        .iter()
        .map(|f| family(f))
        .filter(|f| !f.is_empty())
        .collect();
    Some(match claim {
        "shortcut-decides" => {
            let r1: Vec<f64> = rows
                .iter()
                .filter(|r| {
                    r["spectral_slope"]["mean"]
                        .as_f64()
                        .is_some_and(f64::is_finite)
                })
                .map(|r| r["adjacent_correlation"]["mean"].as_f64().unwrap())
                .collect();
            let (lo, hi) = r1
                .iter()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
                    (lo.min(*v), hi.max(*v))
                });
            let _ = white_r1;
            hi - lo >= kc::DECIDING_SPREAD
        }
        "xskip-mean-field" | "sweep-follows-mean-field" => mean_field,
        "xskip-ln-level" => at_one(&family("xskip-ln")),
        "rskip-ln-level" => at_one(&family("rskip-ln")),
        "rskip-r1-rises" => rises(&family("rskip-ln")),
        "normaliser-holds-one" => !normalised.is_empty() && normalised.iter().all(|f| at_one(f)),
        "normaliser-r1-rises" => !normalised.is_empty() && normalised.iter().all(|f| rises(f)),
        "xskip-critical-lambda" => {
            let alpha = s["config"]["sweep_alpha"].as_f64().unwrap();
            let crit = (1.0 - 2.0 * alpha * alpha).max(0.0).sqrt();
            !xs.is_empty()
                && xs.iter().all(|r| {
                    let (l, d) = (
                        r["lambda"].as_f64().unwrap(),
                        r["log10_gradient_ratio"].as_f64().unwrap(),
                    );
                    !((l < crit && d >= 0.0) || (l > crit && d <= 0.0))
                })
        }
        "resnet-grows" => {
            let r = rows.iter().find(|r| r["arch"] == "resnet")?;
            let g: Vec<f64> = r["layer_grad_norm_mean"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect();
            (g[0] / g[g.len() - 1]).log10() >= kc::LEVEL_DECADES
        }
        _ => return None,
    })
}

fn ensemble(dir: &Path, claim: &str) -> Option<bool> {
    use gradscope_report::ensemble as ec;
    let s = json(&dir.join("summary.json"));
    let (arch, what) = claim.rsplit_once('-').map(|(a, w)| {
        // ids are `<arch>-graceful`, `<arch>-breaks`, `<arch>-short-paths`.
        if w == "paths" {
            (a.trim_end_matches("-short"), "short-paths")
        } else {
            (a, w)
        }
    })?;
    let a = s["archs"].as_array()?.iter().find(|a| a["arch"] == arch)?;
    let nums = |k: &str| -> Vec<f64> {
        a[k].as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap_or(f64::NAN))
            .collect()
    };
    let deletion = nums("single_deletion");
    let mean = |v: &[f64]| {
        let f: Vec<f64> = v.iter().copied().filter(|e| e.is_finite()).collect();
        f.iter().sum::<f64>() / f.len().max(1) as f64
    };
    let intact = a["intact_error"]["mean"].as_f64().unwrap();
    Some(match what {
        "graceful" => mean(&deletion[1..]) - intact <= ec::GRACEFUL_RISE,
        "breaks" => mean(&deletion) >= ec::BROKEN_ERROR,
        "short-paths" => {
            let total = nums("total_gradient");
            let (mut n, mut d) = (0.0, 0.0);
            for (k, t) in total.iter().enumerate() {
                if t.is_finite() {
                    n += k as f64 * t;
                    d += t;
                }
            }
            n / d - a["blocks"].as_f64().unwrap() / 2.0 <= -ec::SHORTER_BY
        }
        _ => return None,
    })
}

fn curvature(dir: &Path, claim: &str) -> Option<bool> {
    use gradscope_report::curvature as cc;
    let table = Csv::read(&dir.join("curvature.csv"));
    let init = table.rows(&[("phase", "init")]);
    let depths: Vec<f64> = init.iter().map(|r| num(r, "depth")).collect();
    let (shallow, deep) = (
        depths.iter().cloned().fold(f64::INFINITY, f64::min),
        depths.iter().cloned().fold(f64::NEG_INFINITY, f64::max),
    );
    let top = |arch: &str, depth: f64| {
        init.iter()
            .find(|r| r["arch"] == arch && num(r, "depth") == depth)
            .map(|r| num(r, "top_eigenvalue_mean"))
    };
    if let Some(plain) = claim.strip_suffix("-sharper") {
        let res = plain.replacen("plain", "resnet", 1);
        return Some(top(plain, deep)? / top(&res, deep)? >= cc::SHARPER_BY);
    }
    let arch = claim.strip_suffix("-grows")?;
    Some(top(arch, deep)? / top(arch, shallow)? >= cc::GROWS_BY)
}

fn transformers(dir: &Path, claim: &str) -> Option<bool> {
    use gradscope_report::transformers as tc;
    use gradscope_spec::{LnPlace, TransformerArch};
    let arch = |r: &std::collections::BTreeMap<String, String>| -> TransformerArch {
        r["arch"].parse().unwrap()
    };
    let output = Csv::read(&dir.join("output_layer.csv"));
    // ‖∂L/∂W²‖ at the deepest over the shallowest depth of the full block
    // with LN placement `ln`.
    let growth = |ln: LnPlace| {
        let rows: Vec<_> = output
            .0
            .iter()
            .filter(|r| {
                let a = arch(r);
                a.ln == ln && a.skip && a.mlp
            })
            .collect();
        let at = |pick: fn(f64, f64) -> bool| {
            rows.iter()
                .copied()
                .reduce(|a, b| {
                    if pick(num(b, "depth"), num(a, "depth")) {
                        b
                    } else {
                        a
                    }
                })
                .map(|r| num(r, "last_ffn_grad_mean"))
        };
        Some(at(|b, a| b > a)? / at(|b, a| b < a)?)
    };
    let rank = Csv::read(&dir.join("rank.csv"));
    // res(h_L)/res(h_0) of every variant that `keep` selects.
    let ratios = |keep: fn(&TransformerArch) -> bool| -> Vec<f64> {
        let mut names: Vec<&String> = Vec::new();
        for r in &rank.0 {
            if keep(&arch(r)) && !names.contains(&&r["arch"]) {
                names.push(&r["arch"]);
            }
        }
        names
            .iter()
            .map(|n| {
                let rows = rank.rows(&[("arch", n.as_str())]);
                let first = rows.iter().find(|r| num(r, "layer") == 0.0).unwrap();
                let last = rows
                    .iter()
                    .copied()
                    .reduce(|a, b| {
                        if num(b, "layer") > num(a, "layer") {
                            b
                        } else {
                            a
                        }
                    })
                    .unwrap();
                num(last, "res_mean") / num(first, "res_mean")
            })
            .collect()
    };
    let train = || Csv::read(&dir.join("train.csv"));
    // Per (arch, rate, warm-up): whether more than half its seeds failed
    // (diverged, or a final loss not below FAILED_SHARE · ln V).
    let fails = |t: &Csv, ln: LnPlace, lr: &str, warm: bool| -> Option<bool> {
        let rows: Vec<_> = t
            .0
            .iter()
            .filter(|r| {
                let a = arch(r);
                a.ln == ln && a.skip && a.mlp && r["lr"] == lr && (num(r, "warmup") > 0.0) == warm
            })
            .collect();
        if rows.is_empty() {
            return None;
        }
        let failed = rows
            .iter()
            .filter(|r| {
                let f = num(r, "final_loss");
                !r["diverged_at"].is_empty()
                    || f.is_nan()
                    || f >= tc::FAILED_SHARE * num(r, "chance_loss")
            })
            .count();
        Some(2 * failed > rows.len())
    };
    let failing = |t: &Csv| -> Vec<String> {
        let mut lrs: Vec<String> = Vec::new();
        for r in &t.0 {
            if !lrs.contains(&r["lr"]) {
                lrs.push(r["lr"].clone());
            }
        }
        lrs.into_iter()
            .filter(|lr| fails(t, LnPlace::Post, lr, false) == Some(true))
            .collect()
    };
    // r₁ at the shallowest and deepest interpolation depth per variant.
    let interp_ends = || -> Vec<(bool, f64, f64)> {
        let t = Csv::read(&dir.join("interpolation.csv"));
        let mut names: Vec<&String> = Vec::new();
        for r in &t.0 {
            if !names.contains(&&r["arch"]) {
                names.push(&r["arch"]);
            }
        }
        names
            .iter()
            .map(|n| {
                let rows = t.rows(&[("arch", n.as_str())]);
                let by = |deeper: bool| {
                    rows.iter()
                        .copied()
                        .reduce(|a, b| {
                            if (num(b, "depth") > num(a, "depth")) == deeper {
                                b
                            } else {
                                a
                            }
                        })
                        .map(|r| num(r, "r1_mean"))
                        .unwrap()
                };
                let a: TransformerArch = n.parse().unwrap();
                (a.skip, by(false), by(true))
            })
            .collect()
    };
    Some(match claim {
        "interp-skips-smoother" => {
            let e = interp_ends();
            let least = e
                .iter()
                .filter(|x| x.0)
                .map(|x| x.2)
                .fold(f64::INFINITY, f64::min);
            let most = e
                .iter()
                .filter(|x| !x.0)
                .map(|x| x.2)
                .fold(f64::NEG_INFINITY, f64::max);
            least > most
        }
        "interp-no-skip-decays" => interp_ends().iter().filter(|x| !x.0).all(|x| x.2 < x.1),
        "post-ln-fails-without-warmup" => !failing(&train()).is_empty(),
        "pre-ln-trains-without-warmup" => {
            let t = train();
            failing(&t)
                .iter()
                .all(|lr| fails(&t, LnPlace::Pre, lr, false) == Some(false))
        }
        "warmup-rescues-post-ln" => {
            let t = train();
            failing(&t)
                .iter()
                .all(|lr| fails(&t, LnPlace::Post, lr, true) == Some(false))
        }
        "post-ln-keeps" => growth(LnPlace::Post)? >= tc::POST_KEEPS,
        "pre-ln-shrinks" => growth(LnPlace::Pre)? <= tc::PRE_SHRINKS,
        "pre-ln-sqrt" => {
            let slopes = Csv::read(&dir.join("slopes.csv"));
            let slope = slopes
                .0
                .iter()
                .find(|r| {
                    let a = arch(r);
                    a.ln == LnPlace::Pre && a.skip && a.mlp
                })
                .map(|r| num(r, "slope"))?;
            (slope + 0.5).abs() <= tc::SLOPE_TOLERANCE
        }
        "trained-pure-attention-collapses" => {
            let mut last: std::collections::BTreeMap<&str, (f64, f64)> = Default::default();
            for r in rank.0.iter().filter(|r| {
                let a = arch(r);
                !a.skip && !a.mlp
            }) {
                let e = last
                    .entry(r["arch"].as_str())
                    .or_insert((f64::NAN, f64::NAN));
                if num(r, "layer") == 0.0 {
                    e.0 = num(r, "trained_res_mean");
                } else {
                    e.1 = num(r, "trained_res_mean");
                }
            }
            !last.is_empty() && last.values().all(|(a, b)| b / a <= tc::COLLAPSED)
        }
        "pure-attention-collapses" => {
            let r = ratios(|a| !a.skip && !a.mlp);
            !r.is_empty() && r.iter().all(|&v| v <= tc::COLLAPSED)
        }
        "skips-keep-rank" => {
            let r = ratios(|a| a.skip);
            !r.is_empty() && r.iter().all(|&v| v >= tc::KEPT)
        }
        _ => return None,
    })
}

fn training(dir: &Path, claim: &str) -> Option<bool> {
    if let Some(run) = claim.strip_suffix("-flat") {
        return training_flat(dir, run);
    }
    let arch = claim.strip_suffix("-degrades")?;
    let last = Csv::read(&dir.join("final.csv"));
    let rows = last.rows(&[("arch", arch)]);
    let by_depth = |pick: &dyn Fn(f64, f64) -> bool| {
        rows.iter()
            .copied()
            .reduce(|a, b| {
                if pick(num(b, "depth"), num(a, "depth")) {
                    b
                } else {
                    a
                }
            })
            .map(|r| num(r, "train_error_mean"))
    };
    let deep = by_depth(&|b, a| b > a)?;
    let shallow = by_depth(&|b, a| b < a)?;
    Some(deep - shallow >= gradscope_contract::training::DEGRADATION_MARGIN)
}

/// `ARCH-DEPTH-flat`: the seed-mean training error of curves.csv fell by
/// at most `FLAT_DROP` over the last quarter of the epochs.
fn training_flat(dir: &Path, run: &str) -> Option<bool> {
    let (arch, depth) = run.rsplit_once('-')?;
    let curves = Csv::read(&dir.join("curves.csv"));
    let rows = curves.rows(&[("arch", arch), ("depth", depth)]);
    let epochs = rows.iter().map(|r| num(r, "epoch") as usize).max()?;
    let mean_at = |e: usize| {
        let at: Vec<f64> = rows
            .iter()
            .filter(|r| num(r, "epoch") as usize == e)
            .map(|r| num(r, "train_error"))
            .collect();
        at.iter().sum::<f64>() / at.len() as f64
    };
    let k = (epochs / 4).max(1);
    let drop = mean_at(epochs - k) - mean_at(epochs);
    Some(drop <= gradscope_contract::training::FLAT_DROP)
}

/// The image part's claims, from `images_summary.csv` and the config's
/// image archs and depths.
fn correlation_images(dir: &Path, s: &serde_json::Value, claim: &str) -> Option<bool> {
    let list = |k: &str| s["config"][k].as_array().unwrap().clone();
    let archs: Vec<String> = list("image_archs")
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    let depths: Vec<f64> = list("image_depths")
        .iter()
        .map(|d| d.as_f64().unwrap())
        .collect();
    let table = Csv::read(&dir.join("images_summary.csv"));
    let stat = |arch: &str, depth: f64, what: &str| {
        let r = table
            .0
            .iter()
            .find(|r| r["arch"] == arch && num(r, "depth") == depth)
            .unwrap();
        Stat {
            mean: num(r, &format!("{what}_mean")),
            se: num(r, &format!("{what}_se")),
        }
    };
    let residual = |a: &String| {
        a.parse::<gradscope_spec::ModelArch>()
            .unwrap()
            .is_residual()
    };
    let (lo, hi) = (depths[0], *depths.last().unwrap());
    if claim == "same-class-above" {
        return Some(archs.iter().all(|a| {
            depths.iter().all(|&d| {
                above(
                    &stat(a, d, "same_class"),
                    &stat(a, d, "different_class"),
                    sc::MARGIN_SE,
                )
            })
        }));
    }
    let plain = &archs[archs.iter().position(|a| !residual(a))?];
    let res = &archs[archs.iter().position(residual)?];
    let same = |a: &str, d: f64| stat(a, d, "same_class");
    Some(match claim {
        "same-class-falls" => [plain, res]
            .iter()
            .all(|a| above(&same(a, lo), &same(a, hi), sc::MARGIN_SE)),
        "residual-keeps-more" => {
            same(res, hi).mean / same(res, lo).mean > same(plain, hi).mean / same(plain, lo).mean
        }
        "residual-above-plain" => above(&same(res, hi), &same(plain, hi), sc::MARGIN_SE),
        _ => return None,
    })
}

fn correlation(dir: &Path, claim: &str) -> Option<bool> {
    let s = json(&dir.join("summary.json"));
    if let Some(c) = claim.strip_prefix("images-") {
        return correlation_images(dir, &s, c);
    }
    let archs: Vec<String> = s["config"]["archs"]
        .as_array()?
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    let depths = s["config"]["depths"].as_array()?;
    let (shallow, deep) = (depths[0].as_u64()?, depths.last()?.as_u64()?);
    let row = |a: &str, d: u64| {
        s["results"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["arch"] == a && r["depth"].as_u64() == Some(d))
    };
    let residual = |a: &String| a.parse::<gradscope_spec::Arch>().unwrap().is_residual();
    let white = s["references"]
        .as_array()?
        .iter()
        .find(|r| r["name"] == "white")?["adjacent_correlation"]["mean"]
        .as_f64()?;
    let ff = archs.iter().find(|a| !residual(a));
    let res = archs.iter().find(|a| residual(a));
    let ends: Vec<(&serde_json::Value, &serde_json::Value)> = archs
        .iter()
        .filter_map(|a| Some((row(a, shallow)?, row(a, deep)?)))
        .collect();
    let floor = 1.0 / s["config"]["examples"].as_f64()?;
    let coherence = |r: &serde_json::Value| r["coherence"]["mean"].as_f64().unwrap();
    let near_far = |r: &serde_json::Value| {
        let v = r["cosine_by_distance_mean"].as_array().unwrap();
        v[0].as_f64().unwrap() - v[v.len() - 1].as_f64().unwrap()
    };
    Some(match claim {
        "feedforward-shatters" => {
            let r = row(ff?, deep)?["adjacent_correlation"]["mean"].as_f64()?;
            (r - white).abs() <= sc::WHITE_BAND
        }
        "residual-above-feedforward" => above(
            &stat_of(&row(res?, deep)?["adjacent_correlation"]),
            &stat_of(&row(ff?, deep)?["adjacent_correlation"]),
            sc::MARGIN_SE,
        ),
        "cosine-falls" => ends.iter().all(|(a, b)| {
            above(
                &stat_of(&a["mean_cosine"]),
                &stat_of(&b["mean_cosine"]),
                sc::MARGIN_SE,
            )
        }),
        "coherence-toward-floor" => ends
            .iter()
            .all(|(a, b)| (coherence(a) - floor).abs() >= (coherence(b) - floor).abs()),
        "nearby-similar" => ends.iter().all(|(a, _)| near_far(a) >= 0.0),
        "distance-range-shrinks" => ends.iter().all(|(a, b)| near_far(a) >= near_far(b)),
        _ => return None,
    })
}

/// Whether rate ½ lies in a narrow enough 95 % interval of `law` fitted to
/// arch `a`'s correlation over nets in the law bin of the shattered report.
fn law_holds(dir: &Path, a: usize, law: gradscope_stats::DecayLaw) -> bool {
    use gradscope_report::shattered::laws as lc;
    use gradscope_stats::{
        Confidence, ExclusionRule, Weighting, correlation_decay, pair_correlation_by_distance,
    };
    let d = gradscope_contract::shattered::ShatteredData::read(dir).unwrap();
    let n = d.grid.len();
    let coords = ndarray::Array2::from_shape_fn((n, 1), |(i, _)| d.grid[i]);
    let mut edges = lc::EDGES;
    edges[3] = edges[3].max(2.0 * d.grid.iter().fold(0.0f64, |m, v| m.max(v.abs())));
    let depths: Vec<f64> = d.summary.config.depths.iter().map(|&l| l as f64).collect();
    let bins: Vec<_> = (0..depths.len())
        .map(|di| {
            pair_correlation_by_distance(
                d.input_gradients.slice(ndarray::s![a, di, .., ..]),
                coords.view(),
                &edges,
            )
            .unwrap()[lc::LAW_BIN]
        })
        .collect();
    correlation_decay(
        &depths,
        &bins,
        law,
        ExclusionRule {
            floor_in_se: Some(lc::FLOOR_IN_SE),
            ..Default::default()
        },
        Weighting::InverseVariance,
        Confidence::P95,
    )
    .is_ok_and(|f| f.rate_consistent_with(0.5) && f.rate_hi - f.rate_lo <= lc::MAX_RATE_WIDTH)
}

/// The landscape claims compare pairs of archs at the deepest depth, each
/// difference ≤ 0 in every pair both run (rows.csv).
fn landscape(dir: &Path, claim: &str) -> Option<bool> {
    use gradscope_report::landscape::{BN_PAIRS, SKIP_PAIRS};
    let rows = Csv::read(&dir.join("rows.csv"));
    let deepest = rows.0.iter().map(|r| num(r, "depth")).fold(0.0, f64::max);
    let at = |arch: &str, col: &str| {
        rows.0
            .iter()
            .find(|r| r["arch"] == arch && num(r, "depth") == deepest)
            .map(|r| num(r, col))
    };
    let (pairs, col) = match claim {
        "skips-flatter-at-init" => (SKIP_PAIRS, "init_surface_rise_mean"),
        "skips-ratio-trained" => (SKIP_PAIRS, "trained_ratio_origin_mean"),
        "bn-beta" => (BN_PAIRS, "beta_smoothness_mean"),
        _ => return None,
    };
    let diffs: Vec<f64> = pairs
        .iter()
        .filter_map(|(a, b)| Some(at(b, col)? - at(a, col)?))
        .collect();
    Some(!diffs.is_empty() && diffs.iter().all(|d| *d <= 0.0))
}

/// `<arch>@<depth>-<stem>`: the variant's best final training error in
/// `verdicts.csv` against the report's bound (NaN: every lr diverged).
fn trainability(dir: &Path, claim: &str) -> Option<bool> {
    let (arch, rest) = claim.split_once('@')?;
    let (depth, stem) = rest.split_once('-')?;
    let text = std::fs::read_to_string(dir.join("verdicts.csv")).unwrap();
    let mut lines = text.lines().map(split_quoted);
    let header = lines.next()?;
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    let (a, d, e) = (col("arch"), col("depth"), col("best_train_error"));
    let row = lines.find(|r| r[a] == arch && r[d] == depth)?;
    let err: f64 = row[e].parse().unwrap();
    let bound = gradscope_report::trainability::TRAINS_BELOW;
    Some(if stem.ends_with("-fails") {
        err.is_nan() || err > bound
    } else {
        stem.ends_with("-trains").then_some(())?;
        err <= bound
    })
}

/// One CSV line with quoted cells (arch specs hold commas).
fn split_quoted(line: &str) -> Vec<String> {
    let (mut out, mut cell, mut quoted) = (Vec::new(), String::new(), false);
    for c in line.chars() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => out.push(std::mem::take(&mut cell)),
            _ => cell.push(c),
        }
    }
    out.push(cell);
    out
}

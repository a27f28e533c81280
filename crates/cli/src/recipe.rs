//! The training recipe on the command line: a few hand-written flags for
//! the nested `train` table of the degradation and ensemble parameters (and
//! of `gradscope train`). The optimiser is an enum whose fields depend on
//! its kind (`momentum` is SGD's, `beta1` Adam's), which a flat list of
//! flags states more plainly than a flattened struct; deeper settings
//! (Adam's betas, a cosine floor) are a study file's.

use anyhow::{Context, Result};
use clap::parser::ValueSource;
use clap::{ArgMatches, Args, Command};
use gradscope_train::{Decay, OptimizerParams, TrainParams};

/// How to train; each flag given replaces that setting of the recipe.
#[derive(Debug, Clone, Default, Args)]
pub struct RecipeFlags {
    /// Passes over the training set.
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Examples per optimiser step.
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// sgd or adam.
    #[arg(long, value_parser = ["sgd", "adam"])]
    pub optimizer: Option<String>,
    /// Base learning rate.
    #[arg(long)]
    pub lr: Option<f64>,
    /// SGD momentum.
    #[arg(long)]
    pub momentum: Option<f64>,
    /// L2 weight decay (SGD) or decoupled weight decay (Adam).
    #[arg(long)]
    pub weight_decay: Option<f64>,
    /// Learning-rate decay: constant, cosine, or step:E1,E2 (÷10 at those epochs).
    #[arg(long, value_name = "DECAY")]
    pub schedule: Option<String>,
    /// Linear warm-up epochs.
    #[arg(long)]
    pub warmup: Option<usize>,
    /// Log gradients every N steps (0: once per epoch).
    #[arg(long, value_name = "N")]
    pub log_every: Option<usize>,
    /// Record the gradient statistics of training (GSNR, update size,
    /// distance from init, effective learning rate, histograms) every N
    /// steps; 0 turns them off (unset: at each gradient log).
    #[arg(long, value_name = "N")]
    pub stats_every: Option<usize>,
}

impl RecipeFlags {
    /// The flags of `cmd` shown with the values of `recipe` as their defaults.
    pub fn show_defaults(cmd: Command, recipe: &TrainParams) -> Command {
        let (momentum, weight_decay) = match &recipe.optimizer {
            OptimizerParams::Sgd {
                momentum,
                weight_decay,
                ..
            } => (Some(*momentum), *weight_decay),
            OptimizerParams::Adam { weight_decay, .. } => (None, *weight_decay),
        };
        let kind = match recipe.optimizer {
            OptimizerParams::Sgd { .. } => "sgd",
            OptimizerParams::Adam { .. } => "adam",
        };
        let mut values = vec![
            ("epochs", recipe.epochs.to_string()),
            ("batch_size", recipe.batch_size.to_string()),
            ("optimizer", kind.to_string()),
            ("lr", recipe.optimizer.lr().to_string()),
            ("weight_decay", weight_decay.to_string()),
            ("schedule", decay_text(&recipe.schedule.decay)),
            ("warmup", recipe.schedule.warmup_epochs.to_string()),
            ("log_every", recipe.log_every.to_string()),
        ];
        values.extend(momentum.map(|m| ("momentum", m.to_string())));
        values
            .into_iter()
            .fold(cmd, |c, (id, v)| c.mut_arg(id, |a| a.default_value(v)))
    }

    /// Only the flags given on the command line (the shown defaults are not
    /// settings: a study file or `--quick` keeps its own recipe).
    pub fn given(m: &ArgMatches) -> Result<RecipeFlags> {
        let on_line = |id: &str| m.value_source(id) == Some(ValueSource::CommandLine);
        fn get<T: Clone + Send + Sync + 'static>(
            m: &ArgMatches,
            id: &str,
            on_line: bool,
        ) -> Option<T> {
            on_line.then(|| m.get_one::<T>(id).cloned()).flatten()
        }
        Ok(RecipeFlags {
            epochs: get(m, "epochs", on_line("epochs")),
            batch_size: get(m, "batch_size", on_line("batch_size")),
            optimizer: get(m, "optimizer", on_line("optimizer")),
            lr: get(m, "lr", on_line("lr")),
            momentum: get(m, "momentum", on_line("momentum")),
            weight_decay: get(m, "weight_decay", on_line("weight_decay")),
            schedule: get(m, "schedule", on_line("schedule")),
            warmup: get(m, "warmup", on_line("warmup")),
            log_every: get(m, "log_every", on_line("log_every")),
            stats_every: get(m, "stats_every", on_line("stats_every")),
        })
    }

    /// Apply the flags given to a recipe; switching optimiser keeps the
    /// learning rate and takes the new one's defaults for the rest.
    pub fn apply(&self, t: &mut TrainParams) -> Result<()> {
        if let Some(v) = self.epochs {
            t.epochs = v;
        }
        if let Some(v) = self.batch_size {
            t.batch_size = v;
        }
        if let Some(v) = self.log_every {
            t.log_every = v;
        }
        if let Some(v) = self.stats_every {
            t.stats_every = Some(v);
        }
        if let Some(v) = self.warmup {
            t.schedule.warmup_epochs = v;
        }
        if let Some(s) = &self.schedule {
            t.schedule.decay = parse_decay(s)?;
        }
        let lr = self.lr.unwrap_or(t.optimizer.lr());
        t.optimizer = match (self.optimizer.as_deref(), t.optimizer.clone()) {
            (
                Some("adam") | None,
                OptimizerParams::Adam {
                    beta1,
                    beta2,
                    eps,
                    weight_decay,
                    ..
                },
            ) => OptimizerParams::Adam {
                lr,
                beta1,
                beta2,
                eps,
                weight_decay: self.weight_decay.unwrap_or(weight_decay),
            },
            (Some("adam"), OptimizerParams::Sgd { .. }) => OptimizerParams::Adam {
                lr,
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
                weight_decay: self.weight_decay.unwrap_or(0.0),
            },
            (
                _,
                OptimizerParams::Sgd {
                    momentum,
                    weight_decay,
                    nesterov,
                    ..
                },
            ) => OptimizerParams::Sgd {
                lr,
                momentum: self.momentum.unwrap_or(momentum),
                weight_decay: self.weight_decay.unwrap_or(weight_decay),
                nesterov,
            },
            (_, OptimizerParams::Adam { .. }) => OptimizerParams::Sgd {
                lr,
                momentum: self.momentum.unwrap_or(0.9),
                weight_decay: self.weight_decay.unwrap_or(0.0),
                nesterov: false,
            },
        };
        if self.momentum.is_some() && matches!(t.optimizer, OptimizerParams::Adam { .. }) {
            anyhow::bail!("--momentum applies to sgd; adam has beta1");
        }
        Ok(())
    }
}

/// `constant`, `cosine`, or `step:E1,E2,…` (÷10 at those epochs).
fn parse_decay(s: &str) -> Result<Decay> {
    Ok(match s.trim() {
        "constant" => Decay::Constant,
        "cosine" => Decay::Cosine { min_lr: 0.0 },
        other => match other.strip_prefix("step:") {
            Some(list) => Decay::Step {
                milestones: list
                    .split(',')
                    .map(|e| {
                        e.trim()
                            .parse::<usize>()
                            .with_context(|| format!("--schedule: `{e}` is not an epoch number"))
                    })
                    .collect::<Result<_>>()?,
                gamma: 0.1,
            },
            None => {
                anyhow::bail!("--schedule `{other}`: expected constant, cosine or step:E1,E2,…")
            }
        },
    })
}

/// A decay as `--schedule` writes it (a cosine floor or a step factor other
/// than ÷10 has no flag, and shows as the plain form).
fn decay_text(d: &Decay) -> String {
    match d {
        Decay::Constant => "constant".into(),
        Decay::Cosine { .. } => "cosine".into(),
        Decay::Step { milestones, .. } => format!(
            "step:{}",
            milestones
                .iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join(",")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_switch_the_optimiser_and_keep_what_they_do_not_name() {
        let mut t = TrainParams::default();
        let lr = t.optimizer.lr();
        RecipeFlags {
            optimizer: Some("adam".into()),
            weight_decay: Some(0.01),
            ..Default::default()
        }
        .apply(&mut t)
        .unwrap();
        assert_eq!(
            t.optimizer,
            OptimizerParams::Adam {
                lr,
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
                weight_decay: 0.01
            }
        );
        let e = RecipeFlags {
            momentum: Some(0.5),
            ..Default::default()
        }
        .apply(&mut t)
        .unwrap_err();
        assert!(e.to_string().contains("adam has beta1"), "{e}");
        RecipeFlags {
            schedule: Some("step:5,8".into()),
            lr: Some(-1.0),
            ..Default::default()
        }
        .apply(&mut t)
        .unwrap();
        assert_eq!(t.optimizer.lr(), -1.0);
        assert_eq!(decay_text(&t.schedule.decay), "step:5,8");
        assert!(parse_decay("linear").is_err());
    }
}

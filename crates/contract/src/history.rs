//! What a training run records: errors and loss per epoch, gradient logs
//! every few steps, and where the loss stopped being finite. Written in the
//! training study's `runs.json` and in every checkpoint.

use serde::{Deserialize, Serialize};

/// Errors and loss after an epoch (both sets evaluated with BN in eval mode).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// 1-based.
    pub epoch: usize,
    /// Optimiser steps so far.
    pub step: usize,
    #[serde(with = "gradscope_stats::nan")]
    /// Learning rate at the epoch's last step.
    pub lr: f64,
    #[serde(with = "gradscope_stats::nan")]
    /// Mean cross-entropy on the training set.
    pub train_loss: f64,
    #[serde(with = "gradscope_stats::nan")]
    /// Share of training examples misclassified.
    pub train_error: f64,
    #[serde(with = "gradscope_stats::nan")]
    /// Mean cross-entropy on the test set.
    pub test_loss: f64,
    #[serde(with = "gradscope_stats::nan")]
    /// Share of test examples misclassified.
    pub test_error: f64,
}

/// Gradients at one step, on a fixed batch of training examples.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GradLog {
    /// Optimiser steps so far.
    pub step: usize,
    /// ‖∂L/∂θ‖ per layer (weights and biases together), in [`History::layers`] order.
    #[serde(with = "gradscope_stats::nan::vec")]
    pub layer_grad_norms: Vec<f64>,
    /// r₁ of df_y/dt along the straight line between two training examples
    /// (the shattering metric of the foundation study), NaN when off.
    #[serde(with = "gradscope_stats::nan")]
    pub line_r1: f64,
    /// Spectral slope of the same signal.
    #[serde(with = "gradscope_stats::nan")]
    pub line_slope: f64,
    /// Mean cosine between the per-example loss gradients of distinct examples.
    #[serde(with = "gradscope_stats::nan")]
    pub mean_cosine: f64,
}

/// Everything a run records.
///
/// The optional fields (`stats`, `learned_lambda`) are left out of
/// human-readable files when empty, and always written in compact binary
/// formats (the studies' cell store), which read fields by position and
/// cannot tell a left-out field from the end of the input.
#[derive(Clone, Debug, PartialEq, Deserialize, Default)]
pub struct History {
    /// Layer names (parameter names without `.weight`/`.bias`), input to output.
    pub layers: Vec<String>,
    /// One record per finished epoch.
    pub epochs: Vec<EpochRecord>,
    /// Gradient logs, every `log_every` steps.
    pub logs: Vec<GradLog>,
    /// The step at which the run diverged, if it did: a mean batch loss
    /// not finite or past the trainer's bound (`DIVERGENCE_LOSS`), a non-finite gradient, or a
    /// parameter the step left non-finite.
    pub diverged_at: Option<usize>,
    /// Gradient statistics per layer and step, when the run records them
    /// (absent from files of runs that did not).
    #[serde(default)]
    pub stats: crate::TrainStats,
    /// The trainable shortcut scales λ per block at the end of the run
    /// (`skip=scale(learn(λ))`, Liu et al. 2020; at the divergence for a
    /// run that diverged, and then possibly not finite), empty
    /// for nets without them (and absent from their files).
    #[serde(default, deserialize_with = "gradscope_stats::nan::vec::deserialize")]
    pub learned_lambda: Vec<f64>,
}

impl Serialize for History {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        /// λ with non-finite values as `null` in text formats.
        struct Lambdas<'a>(&'a [f64]);
        impl Serialize for Lambdas<'_> {
            fn serialize<S: serde::Serializer>(
                &self,
                s: S,
            ) -> std::result::Result<S::Ok, S::Error> {
                gradscope_stats::nan::vec::serialize(self.0, s)
            }
        }
        let readable = s.is_human_readable();
        let stats = !(readable && self.stats.is_empty());
        let lambda = !(readable && self.learned_lambda.is_empty());
        let mut st = s.serialize_struct("History", 4 + usize::from(stats) + usize::from(lambda))?;
        st.serialize_field("layers", &self.layers)?;
        st.serialize_field("epochs", &self.epochs)?;
        st.serialize_field("logs", &self.logs)?;
        st.serialize_field("diverged_at", &self.diverged_at)?;
        if stats {
            st.serialize_field("stats", &self.stats)?;
        } else {
            st.skip_field("stats")?;
        }
        if lambda {
            st.serialize_field("learned_lambda", &Lambdas(&self.learned_lambda))?;
        } else {
            st.skip_field("learned_lambda")?;
        }
        st.end()
    }
}

impl History {
    /// The last finished epoch.
    pub fn final_epoch(&self) -> Option<&EpochRecord> {
        self.epochs.last()
    }
}

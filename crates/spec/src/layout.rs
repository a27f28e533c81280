//! The layer stack of a block, as the nets crate builds it and as
//! [`NetParams::parameter_count`](crate::NetParams::parameter_count) counts it.

use crate::{Arch, Norm, Order};

/// One step of a block's layer stack, as [`Arch::block_steps`] lays it out.
/// The index names the layer in the state dict: `fc1`, `bn1`, `act1` (no
/// number when it is 0, as in a plain block's `fc`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// A linear layer `fc{index}`, fan_in → fan_out.
    Fc {
        /// Position in the branch (1-based; 0 in a plain block).
        index: usize,
        /// Input features.
        fan_in: usize,
        /// Output features.
        fan_out: usize,
        /// Whether the layer has a bias.
        bias: bool,
    },
    /// The arch's norm layer over `width` features, `{tag}{index}`
    /// (see [`Norm::tag`]).
    Norm {
        /// Position in the branch.
        index: usize,
        /// Features normalised.
        width: usize,
    },
    /// The activation φ, `act{index}`.
    Act {
        /// Position in the branch.
        index: usize,
    },
    /// CReLU, x ↦ [relu(x), relu(−x)] (looks-linear).
    CRelu,
}

impl Arch {
    /// Whether the stem has a bias: not in front of Linear → BN, which removes any constant shift.
    pub fn stem_bias(&self) -> bool {
        !matches!(
            self,
            Arch::Plain {
                norm: Norm::Batch,
                looks_linear: false
            }
        )
    }

    /// The layer stack of a plain block, or of a residual or highway branch.
    /// A linear layer straight before BN has no bias: BN's shift replaces it.
    /// Shortcut layers (gates, projections) and post-norm layers after the sum
    /// are not steps: they belong to the block, not its branch.
    pub fn block_steps(&self, width: usize) -> Vec<Step> {
        let norm = self.norm();
        let norm_step = |index, width| norm.is_layer().then_some(Step::Norm { index, width });
        match *self {
            Arch::Plain { looks_linear, .. } => {
                let mut s = Vec::new();
                if looks_linear {
                    s.push(Step::CRelu);
                }
                s.push(Step::Fc {
                    index: 0,
                    fan_in: if looks_linear { 2 * width } else { width },
                    fan_out: width,
                    bias: norm != Norm::Batch,
                });
                s.extend(norm_step(0, width));
                if !looks_linear {
                    s.push(Step::Act { index: 0 });
                }
                s
            }
            Arch::Highway { .. } => vec![
                Step::Fc {
                    index: 1,
                    fan_in: width,
                    fan_out: width,
                    bias: true,
                },
                Step::Act { index: 1 },
            ],
            Arch::Residual {
                order,
                branch: k,
                bottleneck,
                ..
            } => {
                let inner = width / bottleneck;
                let mut s = Vec::new();
                for i in 1..=k {
                    let fan_in = if i == 1 { width } else { inner };
                    let fan_out = if i == k { width } else { inner };
                    let fc = |bias| Step::Fc {
                        index: i,
                        fan_in,
                        fan_out,
                        bias,
                    };
                    match order {
                        Order::Pre => {
                            s.extend(norm_step(i, fan_in));
                            s.push(Step::Act { index: i });
                            s.push(fc(norm != Norm::Batch || i == k));
                        }
                        Order::Post => {
                            s.push(fc(norm != Norm::Batch));
                            s.extend(norm_step(i, fan_out));
                            if i < k {
                                s.push(Step::Act { index: i });
                            }
                        }
                        Order::PostNorm => {
                            s.push(fc(true));
                            if i < k {
                                s.push(Step::Act { index: i });
                            }
                        }
                    }
                }
                s
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_lay_out_their_layers_in_order() {
        use Step::{Act, CRelu, Fc, Norm};
        let fc = |index, fan_in, fan_out, bias| Fc {
            index,
            fan_in,
            fan_out,
            bias,
        };
        // Pre-activation resnet-bn: BN → φ → Linear twice; the first linear
        // layer feeds BN and has no bias, the last one has.
        assert_eq!(
            Arch::RESNET_BN.block_steps(4),
            [
                Norm { index: 1, width: 4 },
                Act { index: 1 },
                fc(1, 4, 4, false),
                Norm { index: 2, width: 4 },
                Act { index: 2 },
                fc(2, 4, 4, true),
            ]
        );
        assert_eq!(
            Arch::PLAIN_BN.block_steps(3),
            [
                fc(0, 3, 3, false),
                Norm { index: 0, width: 3 },
                Act { index: 0 }
            ]
        );
        assert_eq!(
            Arch::LOOKS_LINEAR.block_steps(3),
            [CRelu, fc(0, 6, 3, true)]
        );
        let post: Arch = "resnet:order=post,norm=ln,branch=3,bottleneck=2"
            .parse()
            .unwrap();
        assert_eq!(
            post.block_steps(8),
            [
                fc(1, 8, 4, true),
                Norm { index: 1, width: 4 },
                Act { index: 1 },
                fc(2, 4, 4, true),
                Norm { index: 2, width: 4 },
                Act { index: 2 },
                fc(3, 4, 8, true),
                Norm { index: 3, width: 8 },
            ]
        );
        assert!(!Arch::PLAIN_BN.stem_bias());
        assert!(Arch::RESNET_BN.stem_bias() && Arch::PLAIN.stem_bias());
    }
}

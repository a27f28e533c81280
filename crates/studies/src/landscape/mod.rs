//! The loss landscape and its smoothness: filter-normalised random
//! directions and the loss along them (Li et al. 2018, "Visualizing the
//! Loss Landscape of Neural Nets").

pub mod directions;
pub mod objective;

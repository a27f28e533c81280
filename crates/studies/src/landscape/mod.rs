//! The loss landscape and its smoothness: filter-normalised random
//! directions, 1-D curves and 2-D surfaces of the loss around a point and
//! the Hessian's extreme eigenvalues over the same plane (Li et al. 2018,
//! "Visualizing the Loss Landscape of Neural Nets"), and the smoothness of
//! the loss along the gradient during training (Santurkar et al. 2018,
//! "How Does Batch Normalization Help Optimization?").

pub mod directions;
pub mod objective;
pub mod smoothness;
pub mod surface;

#[cfg(test)]
mod engine_tests;

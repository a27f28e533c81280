//! The loss landscape and its smoothness: filter-normalised random
//! directions, 1-D curves and 2-D surfaces of the loss around a point and
//! the Hessian's extreme eigenvalues over the same plane (Li et al. 2018,
//! "Visualizing the Loss Landscape of Neural Nets"), and the smoothness of
//! the loss along the gradient during training (Santurkar et al. 2018,
//! "How Does Batch Normalization Help Optimization?").
//!
//! What a folder holds is the data contract's ([`gradscope_contract::landscape`]).

pub mod directions;
pub mod objective;
pub mod smoothness;
mod study;
mod summary;
pub mod surface;

pub use gradscope_contract::landscape::{
    LandscapeArrays, LandscapeData, LandscapeParams, LandscapeResults, LandscapeRow,
    LandscapeSummary, NAME, PointSummary, SCHEMA, SMOOTHNESS_COLUMNS, SmoothnessSummary, files,
    read_summary,
};
pub use study::{Cell, CellOutput, LandscapeConfig, PointOutput, check, hessian_method};

#[cfg(test)]
mod engine_tests;

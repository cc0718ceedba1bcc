//! The library side of `trm-server`: the HTTP server (for `trm serve` and the integration
//! tests), the backend choice it shares with the model commands, training (the server runs
//! training jobs), and a load generator for it.

pub mod api;
pub mod backend;
pub mod eval;
pub mod gpu;
pub mod jobs;
pub mod loadtest;
pub mod train;
#[cfg(feature = "wgpu")]
pub mod wgpu_probe;
#[cfg(test)]
mod fuzz;

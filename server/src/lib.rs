//! The library side of `trm-server`: the HTTP server (for `trm serve` and the integration
//! tests) over the served models ([`serving`]), the backend choice and device probes it shares
//! with the model commands ([`backend`]), reading maze inputs ([`inputs`]) and running a model
//! over them ([`solve`]), training (the server runs training jobs), and a load generator.

pub mod api;
pub mod backend;
pub mod eval;
pub mod inputs;
pub mod jobs;
pub mod loadtest;
pub mod serving;
pub mod solve;
pub mod train;
#[cfg(test)]
mod fuzz;

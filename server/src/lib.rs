//! The library side of `trm-server`: the HTTP server (for `trm serve` and the integration
//! tests), the backend choice it shares with the model commands, and a load generator for it.

pub mod api;
pub mod backend;
pub mod loadtest;

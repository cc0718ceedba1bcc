//! The library side of `trm-server`: the HTTP server (for `trm serve` and the integration
//! tests) and the backend choice it shares with the model commands.

pub mod api;
pub mod backend;

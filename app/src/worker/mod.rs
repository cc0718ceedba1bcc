//! The CPU worker: burn's Flex runs the model in a dedicated Web Worker (its own wasm,
//! `src/bin/trm-worker.rs`), so that an ACT step, seconds long with a big model, never
//! blocks the page, and a cancel can stop it at once by terminating the worker.
//!
//! - [`protocol`]: the messages, plain Rust (tested on the host).
//! - `client`: the page's side (start, send, read replies, terminate).
//! - `runner`: the worker's side (hold the model, run the steps, post each answer).

pub mod protocol;

#[cfg(target_family = "wasm")]
pub mod client;
#[cfg(target_family = "wasm")]
mod post;
#[cfg(target_family = "wasm")]
pub mod runner;

//! Fuzz targets for the server's parsers of untrusted input: JSON request bodies (and the
//! mazes inside them) and training configs, as `trm_shared`'s fuzz module does for files
//! (see there for how they run and where failing inputs are kept).

use axum::body::Bytes;
use proptest::prelude::*;
use trm_shared::wire::jobs::{EvalJobRequest, RegisterModelRequest, TrainJobRequest};
use trm_shared::wire::{GenerateRequest, PredictRequest};

use crate::api::body::parse_json;
use crate::api::maze_input::parse_grid;
use crate::train::config::TrainConfig;
use crate::train::local::LocalTrainConfig;

/// A seed with a few bytes replaced, cut out or repeated.
fn mutated(seeds: &'static [&'static str]) -> impl Strategy<Value = Vec<u8>> {
    let edits = proptest::collection::vec((any::<u8>(), any::<usize>(), any::<u8>()), 1..8);
    prop_oneof![
        1 => proptest::collection::vec(any::<u8>(), 0..256),
        4 => (0..seeds.len(), edits).prop_map(|(i, edits)| {
            let mut out = seeds[i].as_bytes().to_vec();
            for (kind, at, value) in edits {
                if out.is_empty() {
                    out.push(value);
                    continue;
                }
                let at = at % out.len();
                match kind % 4 {
                    0 => out[at] = value,
                    1 => drop(out.remove(at)),
                    2 => {
                        let part = out[at..].iter().take(8).copied().collect::<Vec<_>>();
                        out.splice(at..at, part);
                    }
                    // Digits make sizes and counts huge.
                    _ => out.splice(at..at, b"99999999999999999999".iter().copied()).for_each(drop),
                }
            }
            out
        }),
    ]
}

const BODIES: &[&str] = &[
    r#"{"mazes": ["...\nS#G\n..."], "steps": 8, "return_steps": true}"#,
    r#"{"mazes": [{"rows": 2, "cols": 3, "cells": "S.#..G"}, [["S", "G"]]]}"#,
    r#"{"dataset": "maze", "split": "test", "limit": 10, "steps": 4, "batch_size": 8}"#,
    r#"{"config": "global_batch_size = 4\n[arch]\nhidden_size = 16\n", "max_steps": 5}"#,
    r#"{"name": "m", "checkpoint": "a/model.safetensors", "config": "a/config.toml"}"#,
    r#"{"size": 30, "count": 2, "seed": 7, "min_moves": 109}"#,
];

const CONFIGS: &[&str] = &[
    "global_batch_size = 4\nepochs = 10\neval_interval = 10\nlr = 1e-3\n[arch]\nhidden_size = 16\nnum_heads = 2\nL_layers = 1\n[data]\nsize = 6\n",
    include_str!("../../configs/maze-any-size-cpu.toml"),
];

proptest! {
    #[test]
    fn fuzz_request_bodies(bytes in mutated(BODIES)) {
        let bytes = Bytes::from(bytes);
        if let Ok(Some(request)) = parse_json::<PredictRequest>(&bytes, "") {
            for (i, maze) in request.mazes.iter().enumerate() {
                let _ = parse_grid(i, maze, "");
            }
        }
        let _ = parse_json::<EvalJobRequest>(&bytes, "");
        let _ = parse_json::<TrainJobRequest>(&bytes, "");
        let _ = parse_json::<RegisterModelRequest>(&bytes, "");
        let _ = parse_json::<GenerateRequest>(&bytes, "");
    }

    #[test]
    fn fuzz_training_configs(bytes in mutated(CONFIGS)) {
        let text = String::from_utf8_lossy(&bytes);
        if let Ok(cfg) = TrainConfig::from_toml_str(&text) {
            let _ = cfg.step_memory_estimate(900);
        }
        if let Ok(cfg) = toml::from_str::<LocalTrainConfig>(&text) {
            let _ = cfg.validate();
        }
    }
}

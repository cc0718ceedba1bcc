#!/usr/bin/env bash
# Runs every test of the workspace. CI runs exactly this (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh

# The shared crate (maze code, generator, model) must build for the browser too.
cargo check --locked -p trm-shared --no-default-features --target wasm32-unknown-unknown
cargo test --locked --workspace

#!/usr/bin/env bash
# Installs what building and testing trm needs, skipping whatever is already there.
# Safe to run again; used by scripts/run.sh, scripts/test.sh and CI.
set -euo pipefail

# One cargo target directory across runs and checkouts: burn is heavy to build.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/trm-target}"

if ! command -v cargo >/dev/null 2>&1; then
    echo "error: cargo not found; install Rust (rustup) first" >&2
    exit 1
fi

# The browser app and the wasm check of the shared crate need the wasm target.
if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
    rustup target add wasm32-unknown-unknown
fi

#!/usr/bin/env bash
# End-to-end tests of the web app (scripts/test.sh runs this after building dist/).
# Prepares a small model and a copy of dist/ that opens with it, then runs the tests in
# headless Chromium and headless Firefox through node's test runner.
set -euo pipefail
cd "$(dirname "$0")/../.."
target="${CARGO_TARGET_DIR:-$HOME/.cache/trm-target}"
export TRM_BIN="${TRM_BIN:-$target/debug/trm}"
work="target/e2e"
mkdir -p "$work"

# The tests' own model and dataset (kept across runs; remade when the config changes).
stamp="$(sha256sum tests/e2e/tiny-model.toml | cut -c1-16)"
if [ ! -f "$work/model-$stamp/model.safetensors" ]; then
    rm -rf "$work"/model-* "$work/runs"
    "$TRM_BIN" train --config tests/e2e/tiny-model.toml --out "$work/runs" --max-steps 8 >"$work/train.log" 2>&1 \
        || { cat "$work/train.log"; exit 1; }
    run="$(ls -d "$work"/runs/*/ | head -n 1)"
    mkdir -p "$work/model-$stamp"
    cp "$run/checkpoints/$(cat "$run/latest")/model.safetensors" "$run/config.toml" "$work/model-$stamp/"
    rm -rf "$work/datasets" && mkdir -p "$work/datasets" && cp -r "$run/data" "$work/datasets/tiny"
fi
export E2E_MODEL="$PWD/$work/model-$stamp"
export E2E_DATA="$PWD/$work/datasets"

# The built app with the small model as its default.
rm -rf "$work/dist"
cp -r dist "$work/dist"
rm -rf "$work/dist/models/default"
mkdir -p "$work/dist/models/default"
cp "$E2E_MODEL/model.safetensors" "$E2E_MODEL/config.toml" "$work/dist/models/default/"
export E2E_DIST="$PWD/$work/dist"
export E2E_SHOTS="$PWD/target/e2e-screenshots"

cd tests/e2e
exec node --test --test-reporter=tap app.test.mjs firefox.test.mjs

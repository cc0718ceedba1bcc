#!/usr/bin/env bash
# End-to-end tests of the web app (scripts/test.sh runs this after building dist/).
# Prepares a small reference model (opened through the page's model files) and a copy of
# dist/ with its committed default model (the size-general one, public/models/default), then
# runs the tests in headless Chromium and headless Firefox through node's test runner.
set -euo pipefail
cd "$(dirname "$0")/../.."
target="${CARGO_TARGET_DIR:-$HOME/.cache/trm-target}"
export TRM_BIN="${TRM_BIN:-$target/debug/trm}"
work="target/e2e"
mkdir -p "$work"

# The tests' own reference model and dataset (kept across runs; remade when the config changes).
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

# The built app as it ships: its default model, which the server serves too, is the committed one.
rm -rf "$work/dist"
cp -r dist "$work/dist"
export E2E_DIST="$PWD/$work/dist"
export E2E_DEFAULT="$E2E_DIST/models/default"
if ! cmp -s public/models/default/model.safetensors "$E2E_DEFAULT/model.safetensors"; then
    echo "note: dist/ holds another default model than public/models/default (rebuild with trunk build --release)" >&2
fi
export E2E_SHOTS="$PWD/target/e2e-screenshots"

cd tests/e2e
# `run.sh SCRIPT [ARGS]` runs one script in this environment instead (bench.mjs: the app's
# benchmark in headless Chromium, for the README's figures).
if [ $# -gt 0 ]; then exec node "$@"; fi
exec node --test --test-reporter=tap app.test.mjs firefox.test.mjs

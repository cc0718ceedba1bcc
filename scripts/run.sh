#!/usr/bin/env bash
# Sets everything up and runs the main job: `trm serve` with the web app and the API.
#   1. builds the `trm` binary and the web app (Trunk, into dist/);
#   2. generates a fresh Maze-Hard-style dataset (1000 + 1000 hard 30x30 mazes) into data/,
#      prints its statistics next to the real benchmark's, so the app can browse both;
#   3. serves the app and the API on http://127.0.0.1:8080 (ADDR=host:port to change) with the
#      committed model (public/models/default: the size-general TRM, any maze size), until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
# The main job builds the web app (Trunk, wasm-bindgen, wasm-opt) but runs no browser tests:
# no Chromium, Firefox, Node or lavapipe.
TRM_SETUP_TESTS=0
source scripts/setup.sh

cargo build --locked --release -p trm-server
trm="$CARGO_TARGET_DIR/release/trm"
# Trunk builds app/ per Trunk.toml, offline, with the locally installed wasm-bindgen.
trunk build --release

out="data/maze-30x30-hard-generated"
if [ -e "$out" ]; then
    echo "$out exists; showing its statistics (remove it to generate again)"
else
    "$trm" generate --size 30 --train 1000 --test 1000 --min-moves 109 --seed 0 --out "$out"
fi
"$trm" dataset stats "$out"
if [ -d ../shared/data/maze-30x30-hard-1k ]; then
    echo "The real benchmark, for comparison:"
    "$trm" dataset stats ../shared/data/maze-30x30-hard-1k
fi

exec "$trm" serve --addr "${ADDR:-127.0.0.1:8080}"

#!/usr/bin/env bash
# Trains the committed default model, public/models/default/, from configs/maze-small-cpu.toml
# on the CPU, then scores it on 500 freshly generated held-out mazes (a generator seed the
# training data never used) and writes model.safetensors, config.toml and metrics.json.
#
#   ./scripts/train-default-model.sh            # about 30 minutes on a 2-core machine
#   OUT=/tmp/my-model ./scripts/train-default-model.sh   # somewhere else
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/trm-target}"
config=configs/maze-small-cpu.toml
out="${OUT:-public/models/default}"

cargo build --release --locked -p trm-server
trm="$CARGO_TARGET_DIR/release/trm"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
start=$(date +%s)
# Two data-parallel workers where there are two cores (same global batch, same recipe).
devices=0
[ "$(nproc)" -ge 2 ] && devices=0,1
"$trm" train --config "$config" --devices "$devices" --out "$work/runs"
run=$(find "$work/runs" -mindepth 1 -maxdepth 1 -type d | head -n 1)
checkpoint="$run/checkpoints/$(cat "$run/latest")/model.safetensors"
echo "trained in $(( $(date +%s) - start )) s: $checkpoint"

# The held-out mazes: same size and path-length filter as the training data, another seed.
size=$(sed -n 's/^size *= *\([0-9]*\).*/\1/p' "$config")
min_moves=$(sed -n 's/^min_moves *= *\([0-9]*\).*/\1/p' "$config")
"$trm" generate --size "$size" --min-moves "$min_moves" --train 0 --test 500 --seed 7777 --out "$work/heldout"
"$trm" eval --checkpoint "$checkpoint" --config "$config" --data "$work/heldout" --split test --json > "$work/metrics.json"

mkdir -p "$out"
# Each file lands whole or not at all (rename within one directory).
cp "$checkpoint" "$out/.model.safetensors.tmp" && mv "$out/.model.safetensors.tmp" "$out/model.safetensors"
cp "$config" "$out/.config.toml.tmp" && mv "$out/.config.toml.tmp" "$out/config.toml"
cp "$work/metrics.json" "$out/.metrics.json.tmp" && mv "$out/.metrics.json.tmp" "$out/metrics.json"
cp "$run/metrics.jsonl" "$out/.training-log.jsonl.tmp" && mv "$out/.training-log.jsonl.tmp" "$out/training-log.jsonl"
echo "wrote $out: $(grep -o '"exact_accuracy":[0-9.]*' "$out/metrics.json" | head -n 1)"

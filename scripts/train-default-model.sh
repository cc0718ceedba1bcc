#!/usr/bin/env bash
# Trains a committed model on the CPU and scores it, writing model.safetensors, config.toml,
# metrics.json and training-log.jsonl into public/models/NAME/:
#
#   default        configs/maze-small-cpu.toml: 7x7 mazes, ~25 minutes on a 2-core machine;
#                  scored on 500 freshly generated held-out mazes (a seed the training data
#                  never used)
#   maze-hard-cpu  configs/maze-hard-cpu.toml: the real 30x30 benchmark, ~1.5 hours on 2 cores
#                  (data/maze-30x30-hard-1k, made by `trm prepare-dataset` when missing);
#                  scored on the benchmark's 1000 test mazes
#
#   ./scripts/train-default-model.sh [default|maze-hard-cpu]
#   OUT=/tmp/my-model ./scripts/train-default-model.sh       # somewhere else
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/trm-target}"
name="${1:-default}"
case "$name" in
    default) config=configs/maze-small-cpu.toml ;;
    maze-hard-cpu) config=configs/maze-hard-cpu.toml ;;
    *) echo "usage: $0 [default|maze-hard-cpu]" >&2; exit 2 ;;
esac
out="${OUT:-public/models/$name}"

cargo build --release --locked -p trm-server
trm="$CARGO_TARGET_DIR/release/trm"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if [ "$name" = maze-hard-cpu ] && [ ! -d data/maze-30x30-hard-1k ]; then
    # The benchmark: a local copy beside the repository when there is one, else the hub's CSV.
    from=()
    [ -d ../shared/data/maze-30x30-hard-1k ] && from=(--from ../shared/data/maze-30x30-hard-1k)
    "$trm" prepare-dataset "${from[@]}" --out data/maze-30x30-hard-1k
fi
start=$(date +%s)
# Two data-parallel workers where there are two cores (same global batch, same recipe).
devices=0
[ "$(nproc)" -ge 2 ] && devices=0,1
"$trm" train --config "$config" --devices "$devices" --out "$work/runs"
run=$(find "$work/runs" -mindepth 1 -maxdepth 1 -type d | head -n 1)
checkpoint="$run/checkpoints/$(cat "$run/latest")/model.safetensors"
echo "trained in $(( $(date +%s) - start )) s: $checkpoint"

if [ "$name" = default ]; then
    # The held-out mazes: same size and path-length filter as the training data, another seed.
    size=$(sed -n 's/^size *= *\([0-9]*\).*/\1/p' "$config")
    min_moves=$(sed -n 's/^min_moves *= *\([0-9]*\).*/\1/p' "$config")
    "$trm" generate --size "$size" --min-moves "$min_moves" --train 0 --test 500 --seed 7777 --out "$work/heldout"
    heldout="$work/heldout"
else
    heldout=data/maze-30x30-hard-1k
fi
"$trm" eval --checkpoint "$checkpoint" --config "$config" --data "$heldout" --split test --json > "$work/metrics.json"

mkdir -p "$out"
# Each file lands whole or not at all (rename within one directory).
cp "$checkpoint" "$out/.model.safetensors.tmp" && mv "$out/.model.safetensors.tmp" "$out/model.safetensors"
cp "$config" "$out/.config.toml.tmp" && mv "$out/.config.toml.tmp" "$out/config.toml"
cp "$work/metrics.json" "$out/.metrics.json.tmp" && mv "$out/.metrics.json.tmp" "$out/metrics.json"
cp "$run/metrics.jsonl" "$out/.training-log.jsonl.tmp" && mv "$out/.training-log.jsonl.tmp" "$out/training-log.jsonl"
echo "wrote $out: $(grep -o '"exact_accuracy":[0-9.]*' "$out/metrics.json" | head -n 1)"

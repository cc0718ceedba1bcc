#!/usr/bin/env bash
# Trains the committed model on the CPU from scratch and scores it, writing model.safetensors,
# config.toml, the training logs and curves of the five stages, and
# evals/maze-hard-test-1000.json (`trm eval --json --steps 48` on the Maze-Hard test split)
# into public/models/default/. Five stages, each on generated mazes (sides 5-16, then 5-24 and
# 5-30, with loops; never Maze-Hard), with one data-parallel worker per core (two at most):
#
#   1. configs/maze-any-size-cpu.toml from random weights, stopped at step 3600 of its
#      5000-step schedule (as the committed weights were);
#   2. configs/maze-any-size-cpu-stage2.toml from stage 1's weights (`trm train --init`),
#      stopped at step 2000 of its 4000 (as the committed weights were);
#   3. configs/maze-any-size-cpu-stage3.toml from stage 2's weights, all its 1000 steps
#      (the answer update's tick weighted 128 times: stored choices stop flipping);
#   4. configs/maze-any-size-cpu-stage4.toml from stage 3's weights, all its 500 steps
#      (mazes up to 24x24: the Q head learns to halt on big mazes);
#   5. configs/maze-any-size-cpu-stage5.toml from stage 4's weights, all its 250 steps
#      (mazes up to 30x30, the benchmark's size);
#
# then `trm eval` on the 1000 Maze-Hard test mazes (../shared/data or data/, made by
# `trm prepare-dataset` when missing). Deterministic per seed: on the same machine
# model.safetensors comes out byte for byte (the logs differ in their timings). See the README for the times.
#
#   ./scripts/train-default-model.sh
#   OUT=/tmp/my-model ./scripts/train-default-model.sh       # somewhere else
#   SKIP_EVAL=1 ./scripts/train-default-model.sh             # no benchmark score
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/trm-target}"
stage1=configs/maze-any-size-cpu.toml
stage2=configs/maze-any-size-cpu-stage2.toml
stage3=configs/maze-any-size-cpu-stage3.toml
stage4=configs/maze-any-size-cpu-stage4.toml
config=configs/maze-any-size-cpu-stage5.toml
out="${OUT:-public/models/default}"
devices=0
[ "$(nproc)" -ge 2 ] && devices=0,1

cargo build --release --locked -p trm-server
trm="$CARGO_TARGET_DIR/release/trm"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
start=$(date +%s)
"$trm" train --config "$stage1" --out "$work/stage1" --devices "$devices" --max-steps 3600
first=$(find "$work/stage1" -mindepth 1 -maxdepth 1 -type d | head -n 1)
"$trm" train --config "$stage2" --out "$work/stage2" --devices "$devices" --init "$first/model.safetensors" --max-steps 2000
second=$(find "$work/stage2" -mindepth 1 -maxdepth 1 -type d | head -n 1)
"$trm" train --config "$stage3" --out "$work/stage3" --devices "$devices" --init "$second/model.safetensors"
third=$(find "$work/stage3" -mindepth 1 -maxdepth 1 -type d | head -n 1)
"$trm" train --config "$stage4" --out "$work/stage4" --devices "$devices" --init "$third/model.safetensors"
fourth=$(find "$work/stage4" -mindepth 1 -maxdepth 1 -type d | head -n 1)
"$trm" train --config "$config" --out "$work/runs" --devices "$devices" --init "$fourth/model.safetensors"
run=$(find "$work/runs" -mindepth 1 -maxdepth 1 -type d | head -n 1)
echo "trained in $(( $(date +%s) - start )) s: $run/model.safetensors"

if [ "${SKIP_EVAL:-0}" != 1 ]; then
    bench=../shared/data/maze-30x30-hard-1k
    if [ ! -d "$bench" ]; then
        bench=data/maze-30x30-hard-1k
        [ -d "$bench" ] || "$trm" prepare-dataset --out "$bench"
    fi
    "$trm" eval --checkpoint "$run/model.safetensors" --config "$config" --data "$bench" --split test \
        --steps 48 --json > "$work/maze-hard-test-1000.json"
fi

mkdir -p "$out"
# Each file lands whole or not at all (rename within one directory).
put() {
    local tmp
    tmp="$out/$(dirname "$2")/.$(basename "$2").tmp"
    cp "$1" "$tmp" && mv "$tmp" "$out/$2"
}
put "$run/model.safetensors" model.safetensors
"$trm" runs plot "$first" && put "$first/curves.svg" curves-stage1.svg
"$trm" runs plot "$second" && put "$second/curves.svg" curves-stage2.svg
"$trm" runs plot "$third" && put "$third/curves.svg" curves-stage3.svg
"$trm" runs plot "$fourth" && put "$fourth/curves.svg" curves-stage4.svg
"$trm" runs plot "$run" && put "$run/curves.svg" curves.svg
put "$config" config.toml
put "$first/metrics.jsonl" training-log-stage1.jsonl
put "$second/metrics.jsonl" training-log-stage2.jsonl
put "$third/metrics.jsonl" training-log-stage3.jsonl
put "$fourth/metrics.jsonl" training-log-stage4.jsonl
put "$run/metrics.jsonl" training-log.jsonl
if [ -f "$work/maze-hard-test-1000.json" ]; then
    mkdir -p "$out/evals"
    put "$work/maze-hard-test-1000.json" evals/maze-hard-test-1000.json
    echo "wrote $out: $(grep -o '"exact_accuracy":[0-9.]*' "$out/evals/maze-hard-test-1000.json" | head -n 1)"
else
    echo "wrote $out"
fi

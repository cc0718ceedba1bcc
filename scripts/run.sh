#!/usr/bin/env bash
# Sets everything up and runs the main job: generate a fresh Maze-Hard-style dataset
# (1000 train + 1000 test hard 30x30 mazes) and print its statistics next to the real benchmark's.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh

cargo build --locked --release -p trm-server
trm="$CARGO_TARGET_DIR/release/trm"
out="${1:-data/maze-30x30-hard-generated}"
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

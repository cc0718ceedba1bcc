#!/usr/bin/env bash
# Runs every fuzz target (the `fuzz_` proptests of trm-shared and trm-server: checkpoints,
# npy, CSV, maze text, configs, JSON request bodies, training configs) with fresh random
# seeds until SECONDS (default 600) have passed. A failing input is shrunk and written to
# shared/proptest-regressions/ or server/proptest-regressions/: commit it, and every later run
# (CI's included) replays it first.
#
#   ./scripts/fuzz.sh            # ten minutes
#   ./scripts/fuzz.sh 3600       # an hour
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/trm-target}"
seconds="${1:-600}"
cases="${FUZZ_CASES:-5000}"
cargo test --release --locked -p trm-shared -p trm-server --lib --no-run
end=$(( $(date +%s) + seconds ))
rounds=0
while [ "$(date +%s)" -lt "$end" ]; do
    # proptest draws a fresh random seed every run.
    PROPTEST_CASES="$cases" \
        cargo test --release --locked -p trm-shared -p trm-server --lib fuzz_ -q 2>&1 | grep -E "test result|FAILED|panicked" || true
    rounds=$(( rounds + 1 ))
    if git status --porcelain -- '*/proptest-regressions/*' | grep -q .; then
        echo "a fuzz target failed: see the new lines under */proptest-regressions/" >&2
        exit 1
    fi
done
echo "$rounds rounds of $cases cases per target, no failure"

#!/usr/bin/env bash
# Runs every test of the workspace. CI runs exactly this (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."
# Everything, the browser tests' tools included.
TRM_SETUP_TESTS=1
source scripts/setup.sh

# The shared crate (maze code, generator, model) must build for the browser too.
cargo check --locked -p trm-shared --no-default-features --target wasm32-unknown-unknown

log="$(mktemp)"
trap 'rm -f "$log"' EXIT
# scripts/setup.sh as on a fresh machine, with stub tools and nothing installed; its closing
# "N passed, N failed" line counts below.
setup_status=0
bash tests/setup/dry_run.sh 2>&1 | tee -a "$log" || setup_status=$?
# Every crate of every target, so that Trunk (offline) finds the app's wasm-only ones too.
cargo fetch --locked
cargo test --locked --workspace 2>&1 | tee -a "$log"
# The model on wgpu against the CPU, on whatever adapter wgpu finds (lavapipe's CPU Vulkan
# without a GPU); its tests print "skipped: no wgpu adapter" and pass where there is none.
cargo test --locked -p trm-server --features wgpu --test wgpu_parity 2>&1 | tee -a "$log"

# Training across processes: trm with MPI (Open MPI, installed by setup.sh), 2 and 3 ranks
# against one process, a killed rank, a resumed run (tests/mpi/run.sh, a few minutes).
mpi_status=0
cargo build --locked -p trm-server --features mpi --bin trm
bash tests/mpi/run.sh 2>&1 | tee -a "$log" || mpi_status=$?

# The web app: built as `trm serve` serves it, then driven in headless Chromium.
e2e_status=0
if [ "${TRM_SETUP_WEB:-1}" = 1 ]; then
    cargo build --locked -p trm-server --bin trm
    trunk build --release
    echo "wasm: $(du -h dist/*.wasm | cut -f1) (dist/)"
    bash tests/e2e/run.sh 2>&1 | tee -a "$log" || e2e_status=$?
fi

# One closing line over all test binaries (cargo prints one per binary, the last often
# being an empty doc-test run), the end-to-end tests (node's TAP summary) and the setup test.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($i ~ /^passed/) p += $(i-1); if ($i ~ /^failed/) f += $(i-1); if ($i ~ /^ignored/) s += $(i-1) } }
     /^[0-9]+ passed, [0-9]+ failed$/ { p += $1; f += $3 }
     /^# pass / { p += $3 } /^# (fail|cancelled) / { f += $3 } /^# (skipped|todo) / { s += $3 }
     END { printf "total: %d passed, %d failed, %d skipped\n", p, f, s }' "$log"
[ "$setup_status" = 0 ] || exit "$setup_status"
[ "$mpi_status" = 0 ] || exit "$mpi_status"
exit "$e2e_status"

#!/usr/bin/env bash
# `trm train` across processes under Open MPI's mpirun, on this machine's CPU (scripts/test.sh
# runs it after building trm with --features mpi):
#   1. for both trainers (the reference recipe and the size-general model), one process and
#      `mpirun -n 2` / `-n 3` train the same global batch for 20 steps on a tiny config; the
#      final weights agree within 1e-4 (`trm runs diff-weights`);
#   2. SIGKILL one rank of a 2-rank run: the other stops with an error within 30 s (no hang);
#   3. the killed run resumes with the same command (`--resume`) and trains to its end.
# Prints one PASS/FAIL line per check, the measurements (MEASURE lines) and a closing
# "N passed, N failed"; exits non-zero on any failure.
#   TRM_BIN   the trm to run (default: the debug build in $CARGO_TARGET_DIR or target/).
set -euo pipefail
cd "$(dirname "$0")/../.."

trm="${TRM_BIN:-${CARGO_TARGET_DIR:-target}/debug/trm}"
trm="$(realpath "$trm")"
passed=0
failed=0
finished=""
tmp="$(mktemp -d "${TMPDIR:-/tmp}/trm-mpi-test.XXXXXX")"
mpirun_pid=""
cleanup() {
    # A failing check must not leave ranks behind.
    [ -z "$mpirun_pid" ] || kill -KILL "$mpirun_pid" 2>/dev/null || true
    rm -rf "$tmp"
    [ -n "$finished" ] || echo "$passed passed, $((failed + 1)) failed"
}
trap cleanup EXIT

pass() { passed=$((passed + 1)); echo "PASS - $*"; }
fail() { failed=$((failed + 1)); echo "FAIL - $*"; }

command -v mpirun >/dev/null || { echo "FAIL - mpirun not found (scripts/setup.sh installs openmpi-bin)"; exit 1; }
[ -x "$trm" ] || { echo "FAIL - $trm not built (cargo build -p trm-server --features mpi --bin trm)"; exit 1; }

# Open MPI refuses root without these; oversubscribe: 3 ranks on 2 cores (ranks then yield
# the core while they wait instead of spinning). The single-copy mechanism needs ptrace
# rights that containers often lack.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_btl_vader_single_copy_mechanism=none
mpi=(mpirun --oversubscribe -n)

# The reference recipe: 5x5 mazes, hidden 16, batches of 6 (2 or 3 rows per rank), no
# exploration (each worker's exploration stream depends on the worker count).
cat >"$tmp/ref.toml" <<'EOF'
global_batch_size = 6
epochs = 200
eval_interval = 200
lr = 1e-3
lr_warmup_steps = 2
checkpoint_every_steps = 5
seed = 5

[arch]
hidden_size = 16
num_heads = 2
expansion = 2
L_layers = 1
H_cycles = 1
L_cycles = 1
halt_max_steps = 2
halt_exploration_prob = 0.0
puzzle_emb_ndim = 16
puzzle_emb_len = 1
forward_dtype = "float32"

[data]
size = 5
train_count = 24
test_count = 8
EOF

# The size-general model: hidden 8, mazes of sides 4-6, 6 in flight.
cat >"$tmp/local.toml" <<'EOF'
global_batch_size = 6
steps = 20
lr = 2e-3
lr_min_ratio = 0.05
lr_warmup_steps = 2
beta1 = 0.9
beta2 = 0.95
weight_decay = 0.01
ema_rate = 0.995
aux_weight = 1.0
seed = 0
log_interval = 20
eval_interval = 1000
checkpoint_interval = 10

[arch]
mixer = "local"
hidden_size = 8
expansion = 4.0
L_layers = 2
H_cycles = 1
L_cycles = 7
halt_max_steps = 256
rms_norm_eps = 1e-5
vocab_size = 6

[data]
min_side = 4
start_side = 6
max_side = 6
curriculum_steps = 1
wall_share = [0.28, 0.45]
extra_steps = 1
eval_count = 2
eval_sides = [5]
EOF

# The only run directory under $1.
run_dir() {
    local runs=("$1"/*)
    [ "${#runs[@]}" = 1 ] || { echo "expected one run in $1, found ${#runs[@]}" >&2; return 1; }
    echo "${runs[0]}"
}
# The last `elapsed_s` of a train line in RUN/metrics.jsonl.
elapsed() { grep '"kind":"train"' "$1/metrics.jsonl" | tail -n 1 | sed 's/.*"elapsed_s":\([0-9.eE+-]*\).*/\1/'; }
# train OUT RANKS CONFIG: 20 steps, in one process (RANKS 1) or under mpirun; stderr in OUT.log.
train() {
    local out="$1" ranks="$2" config="$3"
    local cmd=("$trm" train --config "$config" --out "$out" --max-steps 20)
    [ "$ranks" = 1 ] || cmd=("${mpi[@]}" "$ranks" "${cmd[@]}")
    timeout 300 "${cmd[@]}" >"$out.log" 2>&1
}

# The live weights after 20 steps: the reference's checkpoint, the size-general model's.
weights_ref() { echo "$(run_dir "$1")/checkpoints/step_20/live.safetensors"; }
weights_local() { echo "$(run_dir "$1")/checkpoint.safetensors"; }

for kind in ref local; do
    echo "== $kind: 1 process against mpirun -n 2 and -n 3, 20 steps of the same global batch"
    for ranks in 1 2 3; do
        out="$tmp/$kind-$ranks"
        if train "$out" "$ranks" "$tmp/$kind.toml"; then
            pass "$kind: $ranks process(es) trained 20 steps"
            echo "MEASURE $kind ranks=$ranks seconds_per_step=$(awk -v e="$(elapsed "$(run_dir "$out")")" 'BEGIN { printf "%.4f", e / 20 }')"
        else
            fail "$kind: $ranks process(es) did not train 20 steps"; sed 's/^/  | /' "$out.log" | tail -n 30
        fi
    done
    one="$(weights_$kind "$tmp/$kind-1")"
    for ranks in 2 3; do
        theirs="$(weights_$kind "$tmp/$kind-$ranks" 2>/dev/null || true)"
        if diff="$("$trm" runs diff-weights "$one" "$theirs" --max-abs 1e-4 2>&1)"; then
            pass "$kind: $ranks ranks end with the one-process weights: $diff"
        else
            fail "$kind: $ranks ranks differ from one process: $diff"
        fi
        echo "MEASURE $kind ranks=$ranks $diff"
    done
    # Only rank 0 writes: one run directory, one metrics log.
    if [ "$(ls "$tmp/$kind-3" | wc -l)" = 1 ]; then pass "$kind: 3 ranks wrote one run directory"; else fail "$kind: 3 ranks wrote $(ls "$tmp/$kind-3")"; fi
done
for kind in ref local; do
    echo "MEASURE $kind: $(grep -ho '[0-9]* processes x .*MPI' "$tmp/$kind-2.log" || echo 'no all-reduce size logged')"
done

echo "== SIGKILL one rank of a 2-rank run, then resume it"
out="$tmp/kill"
cmd=("${mpi[@]}" 2 "$trm" train --config "$tmp/ref.toml" --out "$out" --max-steps 400)
"${cmd[@]}" >"$out.log" 2>&1 &
mpirun_pid=$!
# Wait for the first checkpoint (rank 0 writes `latest`), then kill rank 1.
run=""
for _ in $(seq 1 600); do
    run="$(ls -d "$out"/*/ 2>/dev/null | head -n 1 || true)"
    [ -n "$run" ] && [ -f "$run/latest" ] && break
    sleep 0.1
done
victim=""
for pid in $(pgrep -P "$mpirun_pid" || true); do
    if tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | grep -qx OMPI_COMM_WORLD_RANK=1; then victim="$pid"; fi
done
if [ -z "$run" ] || [ ! -f "$run/latest" ] || [ -z "$victim" ]; then
    fail "no checkpoint or no rank 1 to kill (run '$run', rank 1 '$victim')"; sed 's/^/  | /' "$out.log" | tail -n 30
else
    killed_at="$(cat "$run/latest")"
    start=$(date +%s.%N)
    kill -KILL "$victim"
    status=0
    # The survivors must be gone within 30 s; mpirun exits once they are.
    for _ in $(seq 1 300); do kill -0 "$mpirun_pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$mpirun_pid" 2>/dev/null; then
        fail "the surviving rank still runs 30 s after the kill"
        kill -KILL "$mpirun_pid" 2>/dev/null || true
        wait "$mpirun_pid" 2>/dev/null || true
    else
        wait "$mpirun_pid" || status=$?
        secs="$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }')"
        echo "MEASURE survivors stopped ${secs} s after the SIGKILL of rank 1 (mpirun status $status)"
        if [ "$status" != 0 ]; then pass "the other rank stopped with an error ${secs} s after the kill (at $killed_at)"; else fail "mpirun exited 0 after a rank was killed"; fi
    fi
    mpirun_pid=""
    if pgrep -f "$out" >/dev/null; then fail "a rank of the killed run is still alive"; else pass "no rank of the killed run is left"; fi
    before="$(cat "$run/latest")"
    target=$((${before#step_} + 20))
    # The same command with --resume: rank 0's checkpoint, read by both ranks; 20 steps more.
    if timeout 300 "${mpi[@]}" 2 "$trm" train --resume "$run" --max-steps "$target" >"$out.resume.log" 2>&1; then
        after="$(cat "$run/latest")"
        if [ "$after" = "step_$target" ]; then
            pass "the resumed run went on from $before to $after"
        else
            fail "the resumed run ended at $after (from $before)"
        fi
        if grep -q "resuming .* at step" "$out.resume.log"; then pass "it resumed from the checkpoint"; else fail "it started over"; fi
    else
        fail "the resumed run failed"; sed 's/^/  | /' "$out.resume.log" | tail -n 30
    fi
fi

finished=1
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]

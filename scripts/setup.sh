#!/usr/bin/env bash
# Installs what building and testing trm needs, skipping whatever is already there.
# Safe to run again; used by scripts/run.sh, scripts/test.sh and CI.
#   TRM_SETUP_WEB=0      skip the web app's tools and the browser test tools;
#   TRM_SETUP_TESTS=0    skip only what the tests need (Chromium, Firefox ESR, Node and its
#                        packages, lavapipe; Open MPI and libclang for the MPI test);
#                        scripts/run.sh sets it, the main job needs none;
#   TRM_SETUP_DRY_RUN=1  make every check but install nothing: print one line
#                        `would install: <what> (<command>)` per install (tests/setup/dry_run.sh).
# Where an install is impossible (no cargo, no rustup, no apt-get, neither root nor sudo) it
# stops with one line naming what is missing and how to get it.
set -euo pipefail

setup_root="$(CDPATH='' cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
setup_dry_run="${TRM_SETUP_DRY_RUN:-0}"

setup_fail() {
    echo "error: $*" >&2
    exit 1
}
# The command line, quoted so that it can be pasted into a shell.
setup_quote() {
    local line
    printf -v line '%q ' "$@"
    echo "${line% }"
}
# setup_install WHAT COMMAND...: runs COMMAND, or with TRM_SETUP_DRY_RUN=1 only names it.
setup_install() {
    local what="$1"
    shift
    if [ "$setup_dry_run" = 1 ]; then
        echo "would install: $what ($(setup_quote "$@"))"
    else
        "$@"
    fi
}

# Tools installed by `cargo install` below come first on PATH (a system wasm-opt may be older).
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"

# One cargo target directory across runs and checkouts: burn is heavy to build.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/trm-target}"
# `cargo install` builds in its own one: the shared one is locked while the workspace builds.
setup_install_target="$HOME/.cache/trm-install-target"

if ! command -v cargo >/dev/null 2>&1; then
    setup_fail "cargo not found; install Rust with rustup (https://rustup.rs), then open a new shell"
fi

# The browser app and the wasm check of the shared crate need the wasm target. The list is
# read first: `rustup ... | grep -q` fails under pipefail when grep stops reading early.
if ! command -v rustup >/dev/null 2>&1; then
    setup_fail "rustup not found (needed for the wasm32-unknown-unknown target); install Rust with rustup (https://rustup.rs)"
fi
setup_targets="$(rustup target list --installed 2>/dev/null || true)"
if ! grep -qx wasm32-unknown-unknown <<<"$setup_targets"; then
    setup_install "the wasm32-unknown-unknown target" rustup target add wasm32-unknown-unknown
fi

# The web app: Trunk and wasm-bindgen-cli of exactly the version in Cargo.lock (Trunk runs
# offline and never downloads them), and wasm-opt. Its end-to-end tests (TRM_SETUP_TESTS=1,
# below): Node with playwright-core and puppeteer-core, Debian's Chromium and Firefox ESR; also
# Mesa's lavapipe (a Vulkan driver on the CPU) so that the wgpu parity test finds an adapter
# without a GPU. TRM_SETUP_WEB=0 skips all of it (the wgpu test then skips where no adapter
# exists).
if [ "${TRM_SETUP_WEB:-1}" = 1 ]; then
    trunk_version=0.21.14
    setup_have="$(trunk --version 2>/dev/null || true)"
    if ! grep -qx "trunk $trunk_version" <<<"$setup_have"; then
        setup_install "trunk $trunk_version" \
            cargo install trunk --version "$trunk_version" --locked --target-dir "$setup_install_target"
    fi
    wbg_version="$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/"/, "", $3); print $3 }' "$setup_root/Cargo.lock" 2>/dev/null || true)"
    if [ -z "$wbg_version" ]; then
        setup_fail "no wasm-bindgen version in $setup_root/Cargo.lock; restore it (git checkout Cargo.lock)"
    fi
    setup_have="$(wasm-bindgen --version 2>/dev/null || true)"
    if ! grep -qx "wasm-bindgen $wbg_version" <<<"$setup_have"; then
        # Not --locked: its lock pins a webpki-roots release the registry no longer serves.
        setup_install "wasm-bindgen-cli $wbg_version" \
            cargo install wasm-bindgen-cli --version "$wbg_version" --target-dir "$setup_install_target"
    fi
    # wasm-opt for Trunk's release build. Debian's binaryen 108 cannot read what current rustc
    # emits; crates.io's wasm-opt 0.116.1 builds binaryen 116 from its C++ sources (a few
    # minutes, once; no CMake needed) and installs the same command-line tool.
    # `|| true`: under pipefail a missing wasm-opt would end the script here, silently.
    wasm_opt_version="$(wasm-opt --version 2>/dev/null | awk '{ print $3 }' || true)"
    if ! [[ "$wasm_opt_version" =~ ^[0-9]+$ ]] || [ "$wasm_opt_version" -lt 116 ]; then
        setup_install "wasm-opt 0.116.1 (binaryen 116)" \
            cargo install wasm-opt --version 0.116.1 --locked --target-dir "$setup_install_target"
    fi
fi

# Debian packages of the tests (TRM_SETUP_TESTS=1): Open MPI and libclang (trm's `mpi`
# feature: mpi-sys runs bindgen) for tests/mpi/run.sh; with the web app, the browsers, Node
# and lavapipe.
missing=()
if [ "${TRM_SETUP_TESTS:-1}" = 1 ]; then
    if [ "${TRM_SETUP_WEB:-1}" = 1 ]; then
        command -v chromium >/dev/null 2>&1 || missing+=(chromium)
        command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
        command -v firefox-esr >/dev/null 2>&1 || command -v firefox >/dev/null 2>&1 || missing+=(firefox-esr)
        command -v node >/dev/null 2>&1 || missing+=(nodejs)
        command -v npm >/dev/null 2>&1 || missing+=(npm)
        # TRM_SETUP_ICD_DIR: for tests/setup/dry_run.sh.
        compgen -G "${TRM_SETUP_ICD_DIR:-/usr/share/vulkan/icd.d}/lvp_icd.*.json" >/dev/null \
            || missing+=(mesa-vulkan-drivers)
    fi
    command -v mpirun >/dev/null 2>&1 || missing+=(openmpi-bin)
    command -v mpicc >/dev/null 2>&1 || missing+=(libopenmpi-dev)
    # TRM_SETUP_LLVM_DIR: for tests/setup/dry_run.sh (Debian puts libclang.so under llvm-N).
    compgen -G "${TRM_SETUP_LLVM_DIR:-/usr/lib/llvm-*}/lib/libclang.so" >/dev/null \
        || missing+=(libclang-dev)
fi
if [ "${#missing[@]}" -gt 0 ]; then
    if ! command -v apt-get >/dev/null 2>&1; then
        setup_fail "missing ${missing[*]} and apt-get not found; install these Debian packages (or your system's equivalents) with its package manager, or set TRM_SETUP_TESTS=0 to skip the tests' tools"
    fi
    if [ "$(id -u)" = 0 ]; then
        sudo_cmd=()
    elif command -v sudo >/dev/null 2>&1; then
        sudo_cmd=(sudo)
    else
        setup_fail "missing ${missing[*]}, not root and sudo not found; as root run: apt-get install ${missing[*]}"
    fi
    # `env` after sudo: sudo drops DEBIAN_FRONTEND from the environment.
    apt_update=(${sudo_cmd[@]+"${sudo_cmd[@]}"} apt-get update)
    apt_install=(${sudo_cmd[@]+"${sudo_cmd[@]}"} env DEBIAN_FRONTEND=noninteractive
        apt-get install -y --no-install-recommends "${missing[@]}")
    if [ "$setup_dry_run" = 1 ]; then
        echo "would install: Debian packages ${missing[*]} ($(setup_quote "${apt_update[@]}") && $(setup_quote "${apt_install[@]}"))"
    else
        "${apt_update[@]}"
        "${apt_install[@]}"
    fi
fi

if [ "${TRM_SETUP_WEB:-1}" = 1 ] && [ "${TRM_SETUP_TESTS:-1}" = 1 ]; then
    # npm ci only when the lock is newer than the last install.
    e2e_dir="$setup_root/tests/e2e"
    stamp="$e2e_dir/node_modules/.installed"
    if [ ! -f "$stamp" ] || [ "$e2e_dir/package-lock.json" -nt "$stamp" ]; then
        if [ "$setup_dry_run" = 1 ]; then
            echo "would install: the Node packages of tests/e2e (cd $(setup_quote "$e2e_dir") && npm ci --no-audit --no-fund)"
        else
            # Two commands: in an `a && b` list set -e ignores a failing `a`.
            (cd "$e2e_dir" && npm ci --no-audit --no-fund)
            touch "$stamp"
        fi
    fi
fi
unset -f setup_fail setup_quote setup_install

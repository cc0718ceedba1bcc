#!/usr/bin/env bash
# Installs what building and testing trm needs, skipping whatever is already there.
# Safe to run again; used by scripts/run.sh, scripts/test.sh and CI.
set -euo pipefail

# Tools installed by `cargo install` below come first on PATH (a system wasm-opt may be older).
export PATH="$HOME/.cargo/bin:$PATH"

# One cargo target directory across runs and checkouts: burn is heavy to build.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/trm-target}"

if ! command -v cargo >/dev/null 2>&1; then
    echo "error: cargo not found; install Rust (rustup) first" >&2
    exit 1
fi

# The browser app and the wasm check of the shared crate need the wasm target.
if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
    rustup target add wasm32-unknown-unknown
fi

# The web app and its end-to-end tests: Trunk, wasm-bindgen-cli of exactly the version in
# Cargo.lock (Trunk runs offline and never downloads them), Node with playwright-core and
# puppeteer-core, and Debian's Chromium and Firefox ESR; also Mesa's lavapipe (a Vulkan driver
# on the CPU) so that the wgpu parity test finds an adapter without a GPU. Set TRM_SETUP_WEB=0
# to skip (the main job needs none of it; the wgpu test then skips where no adapter exists).
if [ "${TRM_SETUP_WEB:-1}" = 1 ]; then
    trunk_version=0.21.14
    if ! trunk --version 2>/dev/null | grep -qx "trunk $trunk_version"; then
        cargo install trunk --version "$trunk_version" --locked
    fi
    wbg_version="$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/"/, "", $3); print $3 }' Cargo.lock)"
    if ! wasm-bindgen --version 2>/dev/null | grep -qx "wasm-bindgen $wbg_version"; then
        # Not --locked: its lock pins a webpki-roots release the registry no longer serves.
        cargo install wasm-bindgen-cli --version "$wbg_version"
    fi
    # wasm-opt for Trunk's release build. Debian's binaryen 108 cannot read what current rustc
    # emits; crates.io's wasm-opt 0.116.1 builds binaryen 116 from its C++ sources (a few
    # minutes, once; no CMake needed) and installs the same command-line tool.
    wasm_opt_version="$(wasm-opt --version 2>/dev/null | awk '{ print $3 }')"
    if [ -z "$wasm_opt_version" ] || [ "$wasm_opt_version" -lt 116 ] 2>/dev/null; then
        cargo install wasm-opt --version 0.116.1 --locked
    fi
    missing=()
    command -v chromium >/dev/null 2>&1 || missing+=(chromium)
    command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
    command -v firefox-esr >/dev/null 2>&1 || command -v firefox >/dev/null 2>&1 || missing+=(firefox-esr)
    command -v node >/dev/null 2>&1 || missing+=(nodejs)
    command -v npm >/dev/null 2>&1 || missing+=(npm)
    ls /usr/share/vulkan/icd.d/lvp_icd.*.json >/dev/null 2>&1 || missing+=(mesa-vulkan-drivers)
    if [ "${#missing[@]}" -gt 0 ]; then
        if [ "$(id -u)" != 0 ] && ! command -v sudo >/dev/null 2>&1; then
            echo "error: missing ${missing[*]}; install them (apt-get install ${missing[*]})" >&2
            exit 1
        fi
        sudo_cmd=""
        [ "$(id -u)" = 0 ] || sudo_cmd="sudo"
        $sudo_cmd apt-get update
        DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y --no-install-recommends "${missing[@]}"
    fi
    # npm ci only when the lock is newer than the last install.
    stamp=tests/e2e/node_modules/.installed
    if [ ! -f "$stamp" ] || [ tests/e2e/package-lock.json -nt "$stamp" ]; then
        (cd tests/e2e && npm ci --no-audit --no-fund) && touch "$stamp"
    fi
fi

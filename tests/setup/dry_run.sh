#!/usr/bin/env bash
# scripts/setup.sh as on a fresh machine, installing nothing. It runs a copy of the script (with
# Cargo.lock and tests/e2e's package-lock.json beside it) under `env -i` with a PATH made only
# of stub commands and links to the basic tools the script may use (so that whatever this
# machine has installed is invisible), a scratch HOME and CARGO_HOME, and checks what it
# would install (TRM_SETUP_DRY_RUN=1), what it runs without the switch (stubs that record
# their arguments), that it installs nothing where everything is there, and its one-line
# errors where an install is impossible. Cheap (no network, nothing built); scripts/test.sh
# runs it. Ends with "N passed, N failed"; exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/../.."

passed=0
failed=0
finished=""
tmp="$(mktemp -d "${TMPDIR:-/tmp}/trm-setup-test.XXXXXX")"
# A closing line even where the test itself breaks off.
trap 'rm -rf "$tmp"; [ -n "$finished" ] || echo "$passed passed, $((failed + 1)) failed"' EXIT
home="$tmp/home"
install_target="$home/.cache/trm-install-target"
calls="$tmp/calls.log"
mkdir -p "$home" "$tmp/cargo-home" "$tmp/no-icd" "$tmp/icd" "$tmp/no-llvm" "$tmp/llvm/lib"
touch "$tmp/icd/lvp_icd.x86_64.json" "$tmp/llvm/lib/libclang.so"

# The version setup.sh must install, read here independently of setup.sh.
wbg_version="$(grep -A1 -x 'name = "wasm-bindgen"' Cargo.lock | sed -n 's/^version = "\(.*\)"$/\1/p')"
[ -n "$wbg_version" ] || { echo "FAIL - no wasm-bindgen in Cargo.lock"; exit 1; }

# The repository as setup.sh sees it; the lock is older than any install stamp.
repo="$tmp/repo"
mkdir -p "$repo/scripts" "$repo/tests/e2e"
cp scripts/setup.sh "$repo/scripts/"
cp Cargo.lock "$repo/"
cp tests/e2e/package.json tests/e2e/package-lock.json "$repo/tests/e2e/"
touch -d @1000000000 "$repo/tests/e2e/package-lock.json"

# The only real tools on PATH: what a fresh Debian has and setup.sh needs.
utils="$tmp/utils"
mkdir -p "$utils"
for tool in bash awk grep dirname env touch; do
    ln -s "$(command -v "$tool")" "$utils/$tool"
done

# stubs DIR TOOL...: a directory of stub commands. Each records its arguments in $calls,
# except the queries (`rustup target list`, `id -u`, the tools' --version), answered here.
stubs() {
    local dir="$tmp/$1" tool file
    shift
    mkdir -p "$dir"
    for tool in "$@"; do
        file="$tool"
        case "$tool" in
        id-root | id-user)
            file=id
            printf '#!%s\n[ "$1" = -u ] && echo %s\n' "$BASH" "$([ "$tool" = id-root ] && echo 0 || echo 1000)" >"$dir/$file" ;;
        rustup | rustup-wasm)
            file=rustup
            printf '#!%s\nif [ "$1 $2" = "target list" ]; then %s; exit 0; fi\necho "rustup $*" >>%q\n' \
                "$BASH" "$([ "$tool" = rustup-wasm ] && echo 'echo wasm32-unknown-unknown' || echo :)" "$calls" >"$dir/$file" ;;
        apt-get)
            printf '#!%s\necho "${DEBIAN_FRONTEND:+DEBIAN_FRONTEND=$DEBIAN_FRONTEND }apt-get $*" >>%q\n' "$BASH" "$calls" >"$dir/$file" ;;
        npm)
            printf '#!%s\necho "npm $* (in $PWD)" >>%q\n%q -p node_modules\n' "$BASH" "$calls" "$(command -v mkdir)" >"$dir/$file" ;;
        sudo)
            printf '#!%s\necho "sudo $*" >>%q\nexec "$@"\n' "$BASH" "$calls" >"$dir/$file" ;;
        trunk) printf '#!%s\necho "trunk 0.21.14"\n' "$BASH" >"$dir/$file" ;;
        wasm-bindgen) printf '#!%s\necho "wasm-bindgen %s"\n' "$BASH" "$wbg_version" >"$dir/$file" ;;
        wasm-opt) printf '#!%s\necho "wasm-opt version 116 (version_116)"\n' "$BASH" >"$dir/$file" ;;
        *) printf '#!%s\necho "%s $*" >>%q\n' "$BASH" "$tool" "$calls" >"$dir/$file" ;;
        esac
        chmod +x "$dir/$file"
    done
}
stubs fresh cargo rustup apt-get id-root
stubs no-apt cargo rustup id-user
stubs no-sudo cargo rustup apt-get id-user
stubs with-sudo cargo rustup apt-get sudo id-user
stubs no-cargo rustup apt-get id-root
stubs no-rustup cargo apt-get id-root
stubs with-node cargo rustup apt-get node npm id-root
stubs complete cargo rustup-wasm trunk wasm-bindgen wasm-opt chromium chromedriver firefox-esr node npm mpirun mpicc id-root

# setup CASE STUBS [VAR=VALUE...]: runs the copy of setup.sh; $tmp/CASE.out, .err, $status.
setup() {
    local name="$1" dir="$tmp/$2"
    shift 2
    : >"$calls"
    status=0
    env -i PATH="$dir:$utils" HOME="$home" CARGO_HOME="$tmp/cargo-home" TRM_SETUP_ICD_DIR="$tmp/no-icd" TRM_SETUP_LLVM_DIR="$tmp/no-llvm" "$@" \
        "$utils/bash" "$repo/scripts/setup.sh" >"$tmp/$name.out" 2>"$tmp/$name.err" || status=$?
    out="$tmp/$name.out"
    err="$tmp/$name.err"
    failed_before=$failed
}
# After a case: its output, where one of its checks failed.
shown() {
    if [ "$failed" != "$failed_before" ]; then
        echo "  status $status; stdout:"; sed 's/^/  | /' "$out"
        echo "  stderr:"; sed 's/^/  | /' "$err"
        echo "  calls:"; sed 's/^/  | /' "$calls"
    fi
}

check() {
    local what="$1"
    shift
    if "$@"; then
        passed=$((passed + 1))
        echo "ok - $what"
    else
        failed=$((failed + 1))
        echo "FAIL - $what"
    fi
}
line() { grep -qxF -- "$2" "$1"; }          # FILE has exactly this line
names() { grep -qF -- "$2" "$1"; }          # FILE has this text somewhere
lacks() { ! grep -qF -- "$2" "$1"; }
lines() { [ "$(grep -c '' "$1")" = "$2" ]; } # FILE has N lines
only_would() { ! grep -qv '^would install: ' "$1"; }
names_all() { # FILE TEXT...: FILE has each TEXT
    local file="$1" text
    shift
    for text in "$@"; do names "$file" "$text" || return 1; done
}
# Every command the real run made, as its dry run printed it (npm's directory aside).
as_printed() {
    local call
    while IFS= read -r call; do names "$tmp/real-dry.out" "${call% (in *}" || return 1; done <"$calls"
}
error_line() { lines "$err" 1 && grep -q '^error: ' "$err"; }

packages="chromium chromium-driver firefox-esr nodejs npm mesa-vulkan-drivers openmpi-bin libopenmpi-dev libclang-dev"
mpi_packages="openmpi-bin libopenmpi-dev libclang-dev"
want_target="would install: the wasm32-unknown-unknown target (rustup target add wasm32-unknown-unknown)"
want_trunk="would install: trunk 0.21.14 (cargo install trunk --version 0.21.14 --locked --target-dir $install_target)"
want_wbg="would install: wasm-bindgen-cli $wbg_version (cargo install wasm-bindgen-cli --version $wbg_version --target-dir $install_target)"
want_opt="would install: wasm-opt 0.116.1 (binaryen 116) (cargo install wasm-opt --version 0.116.1 --locked --target-dir $install_target)"
want_apt="would install: Debian packages $packages (apt-get update && env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $packages)"
want_mpi_apt="would install: Debian packages $mpi_packages (apt-get update && env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $mpi_packages)"
want_npm="would install: the Node packages of tests/e2e (cd $repo/tests/e2e && npm ci --no-audit --no-fund)"

echo "== fresh machine, as root (scripts/test.sh, CI)"
setup fresh fresh TRM_SETUP_DRY_RUN=1
check "exits 0" [ "$status" = 0 ]
check "names the wasm32 target" line "$out" "$want_target"
check "names trunk 0.21.14 (own target dir)" line "$out" "$want_trunk"
check "names wasm-bindgen-cli $wbg_version of Cargo.lock" line "$out" "$want_wbg"
check "names wasm-opt 0.116.1" line "$out" "$want_opt"
check "names the Debian packages, Open MPI and libclang included" line "$out" "$want_apt"
check "names npm ci" line "$out" "$want_npm"
check "one line per install, nothing else" eval 'lines "$out" 6 && only_would "$out"'
check "nothing on stderr" lines "$err" 0
check "runs no install" lines "$calls" 0
shown

echo "== TRM_SETUP_TESTS=0 (scripts/run.sh, the main job)"
setup main fresh TRM_SETUP_DRY_RUN=1 TRM_SETUP_TESTS=0
check "exits 0" [ "$status" = 0 ]
check "names the wasm32 target, trunk, wasm-bindgen-cli, wasm-opt" \
    eval 'line "$out" "$want_target" && line "$out" "$want_trunk" && line "$out" "$want_wbg" && line "$out" "$want_opt"'
check "names no browser test tool" eval 'lines "$out" 4 && only_would "$out"'
for p in chromium firefox nodejs npm mesa openmpi libclang apt-get; do
    check "does not name $p" lacks "$out" "$p"
done
shown

echo "== TRM_SETUP_WEB=0"
setup noweb fresh TRM_SETUP_DRY_RUN=1 TRM_SETUP_WEB=0
check "exits 0, names the wasm32 target and the MPI test's packages only" eval '[ "$status" = 0 ] && lines "$out" 2 && line "$out" "$want_target" && line "$out" "$want_mpi_apt"'
setup noweb-notests fresh TRM_SETUP_DRY_RUN=1 TRM_SETUP_WEB=0 TRM_SETUP_TESTS=0
check "with TRM_SETUP_TESTS=0 too: only the wasm32 target" eval '[ "$status" = 0 ] && lines "$out" 1 && line "$out" "$want_target"'
shown

echo "== not root, sudo there"
setup sudo with-sudo TRM_SETUP_DRY_RUN=1
check "exits 0" [ "$status" = 0 ]
check "apt-get through sudo" line "$out" \
    "would install: Debian packages $packages (sudo apt-get update && sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $packages)"
check "runs no install" lines "$calls" 0
shown

echo "== not root, no sudo, no apt-get"
setup noapt no-apt TRM_SETUP_DRY_RUN=1
check "exits non-zero" [ "$status" != 0 ]
check "one error line" error_line
check "naming apt-get and every package" names_all "$err" apt-get $packages
shown

echo "== not root, no sudo, apt-get there"
setup nosudo no-sudo TRM_SETUP_DRY_RUN=1
check "exits non-zero" [ "$status" != 0 ]
check "one error line, naming sudo and the packages" eval 'error_line && names "$err" sudo && names "$err" "apt-get install $packages"'
check "runs no install" lines "$calls" 0
shown

echo "== no cargo"
setup nocargo no-cargo TRM_SETUP_DRY_RUN=1
check "exits non-zero with one error line naming cargo and rustup" \
    eval '[ "$status" != 0 ] && error_line && names "$err" cargo && names "$err" https://rustup.rs && lines "$out" 0'
shown

echo "== no rustup"
setup norustup no-rustup TRM_SETUP_DRY_RUN=1
check "exits non-zero with one error line naming rustup" \
    eval '[ "$status" != 0 ] && error_line && names "$err" "rustup not found" && lines "$out" 0'
shown

echo "== everything there"
mkdir -p "$repo/tests/e2e/node_modules" && touch "$repo/tests/e2e/node_modules/.installed"
setup complete complete TRM_SETUP_DRY_RUN=1 TRM_SETUP_ICD_DIR="$tmp/icd" TRM_SETUP_LLVM_DIR="$tmp/llvm"
check "exits 0, would install nothing" eval '[ "$status" = 0 ] && lines "$out" 0 && lines "$err" 0'
setup complete-real complete TRM_SETUP_ICD_DIR="$tmp/icd" TRM_SETUP_LLVM_DIR="$tmp/llvm"
check "without the switch: exits 0, runs nothing" eval '[ "$status" = 0 ] && lines "$out" 0 && lines "$calls" 0'
shown
rm -r "$repo/tests/e2e/node_modules"

echo "== without the switch, Node there: runs exactly the printed commands"
setup real-dry with-node TRM_SETUP_DRY_RUN=1
setup real with-node
check "exits 0" [ "$status" = 0 ]
printf '%s\n' \
    "rustup target add wasm32-unknown-unknown" \
    "cargo install trunk --version 0.21.14 --locked --target-dir $install_target" \
    "cargo install wasm-bindgen-cli --version $wbg_version --target-dir $install_target" \
    "cargo install wasm-opt --version 0.116.1 --locked --target-dir $install_target" \
    "apt-get update" \
    "DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium chromium-driver firefox-esr mesa-vulkan-drivers $mpi_packages" \
    "npm ci --no-audit --no-fund (in $repo/tests/e2e)" >"$tmp/want-calls"
check "runs these commands, in order" cmp -s "$tmp/want-calls" "$calls"
check "each as the dry run printed it" as_printed
check "marks the Node packages installed" test -f "$repo/tests/e2e/node_modules/.installed"
shown

finished=1
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]

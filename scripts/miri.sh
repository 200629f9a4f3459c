#!/usr/bin/env bash
# Runs the unit tests of the modules that own raw memory under Miri, with the
# small test configurations those tests pick under cfg(miri). Installs the
# nightly Miri components when they are missing; exits non-zero on any finding.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! cargo +nightly miri --version >/dev/null 2>&1; then
    echo "miri.sh: installing nightly miri and rust-src" >&2
    rustup toolchain install nightly --profile minimal >&2
    rustup component add --toolchain nightly miri rust-src >&2
fi

# The modules whose unsafe code Miri checks; each test filter is a module path.
modules=(memory:: chunk:: subpage:: arena:: thread_cache:: buf::)

export MIRIFLAGS="${MIRIFLAGS:-} -Zmiri-strict-provenance"
cargo +nightly miri setup >&2
exec cargo +nightly miri test -p arenabuf --lib -- "${modules[@]}"

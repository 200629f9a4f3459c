#!/usr/bin/env bash
# Model-checks the cross-thread release and thread-exit paths with loom.
set -euo pipefail
cd "$(dirname "$0")/.."
export RUSTFLAGS="${RUSTFLAGS:-} --cfg loom"
export LOOM_MAX_PREEMPTIONS="${LOOM_MAX_PREEMPTIONS:-3}"
exec cargo test --release -p arenabuf --lib --target-dir target/loom -- loom_ --test-threads=1

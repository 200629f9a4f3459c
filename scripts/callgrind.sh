#!/usr/bin/env bash
# Counts the instructions of one hot alloc+release pair (256 B, thread-cache
# hit) with callgrind: the difference between runs of 200,000 and 100,000
# pairs, divided by 100,000, so start-up and the first (missing) pair cancel
# out. Instruction counts do not depend on machine load.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v valgrind >/dev/null; then
    echo "callgrind.sh: installing valgrind" >&2
    apt-get update -qq >&2 && apt-get install -y -qq valgrind >&2
fi
cargo build --release -p arenabuf-bench >&2
bin=target/release/arenabuf
count() {
    valgrind --tool=callgrind --callgrind-out-file=/dev/null "$bin" hot-loop "$1" 2>&1 \
        | awk '/I *refs:/ { gsub(",", "", $NF); print $NF }'
}
small=$(count 100000)
large=$(count 200000)
echo "instructions per hot alloc+release pair (256 B, cache hit, incl. loop): $(( (large - small) / 100000 ))"

#!/usr/bin/env bash
# Counts the instructions of one hot alloc+release pair (256 B, thread-cache
# hit) with callgrind: the difference between runs of 200,000 and 100,000
# pairs, divided by 100,000, so start-up and the first (missing) pair cancel
# out. Instruction counts do not depend on machine load.
#
# The first line is arenabuf-direct's pair, the figure of issue 4's target.
# The lines after it count the same loop (`arenabuf hot-loop N IMPL`: take
# the buffer's pointer, add it to a checksum, release) on the reference
# implementations, so that the target can be read against what they take:
# mimalloc and jemalloc with 8-byte pointers, `floor` (no allocator work, an
# 8-byte handle) and `floor-wide` (the same carrying a ByteBuf-sized handle).
# `scripts/callgrind.sh arenabuf-direct` counts arenabuf's pair alone.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v valgrind >/dev/null; then
    echo "callgrind.sh: installing valgrind" >&2
    apt-get update -qq >&2 && apt-get install -y -qq valgrind >&2
fi
cargo build --release -p arenabuf-bench >&2
bin=target/release/arenabuf
count() {
    valgrind --tool=callgrind --callgrind-out-file=/dev/null "$bin" hot-loop "$1" "$2" 2>&1 \
        | awk '/I *refs:/ { gsub(",", "", $NF); print $NF }'
}
per_pair() {
    local small large
    small=$(count 100000 "$1")
    large=$(count 200000 "$1")
    echo $(( (large - small) / 100000 ))
}
impls=("$@")
[ ${#impls[@]} -gt 0 ] || impls=(arenabuf-direct mimalloc jemalloc floor floor-wide)
for impl in "${impls[@]}"; do
    if [ "$impl" = arenabuf-direct ]; then
        echo "instructions per hot alloc+release pair (256 B, cache hit, incl. loop): $(per_pair "$impl")"
    else
        echo "  the same loop on $impl: $(per_pair "$impl")"
    fi
done

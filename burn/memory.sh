#!/usr/bin/env bash
# The largest in-batch contrastive step (forward and backward, D = 128) that
# metric-loss-burn's operation and the same loss in plain burn tensor ops run on this
# machine, and their peak RSS: one process per (implementation, B), B doubling from 1024
# until a run fails or MAX_ROWS is reached. Each process may use at most LIMIT_GB of
# address space (ulimit -v), so a run that would exhaust the machine fails instead.
# Usage: bash burn/memory.sh [MAX_ROWS] [LIMIT_GB]
set -uo pipefail
cd "$(dirname "$0")/.."
max_rows="${1:-65536}"
limit_gb="${2:-16}"
cargo build -p metric-loss-burn --release --example memory --quiet || exit 1
bin=target/release/examples/memory
for which in burn ours; do
    rows=1024
    while [ "$rows" -le "$max_rows" ]; do
        if out=$( (ulimit -v $((limit_gb * 1024 * 1024)); "$bin" --impl "$which" --rows "$rows") 2>/tmp/memory-err.txt); then
            echo "$out"
        else
            echo "{\"impl\": \"$which\", \"rows\": $rows, \"failed\": \"$(tail -c 300 /tmp/memory-err.txt | tr '\n"' ' _')\"}"
            break
        fi
        rows=$((rows * 2))
    done
done

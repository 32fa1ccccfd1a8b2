#!/usr/bin/env bash
# Times two metric-loss binaries side by side on the same cases, alternating which runs first
# each round (the machine drifts between rounds), and prints per-case medians and the ratio
# new/old as a Markdown table. Used to show a change costs no speed.
#
#   git worktree add /tmp/before <commit> && (cd /tmp/before && cargo build --release --bin metric-loss)
#   cargo build --release --bin metric-loss
#   bash benches/before_after.sh /tmp/before/target/release/metric-loss target/release/metric-loss 3
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: before_after.sh OLD_BIN NEW_BIN [ROUNDS=3] [REPEAT=5]" >&2; exit 2; }
old=$1 new=$2 rounds=${3:-3} repeat=${4:-5}
if [ -z "${XDG_RUNTIME_DIR:-}" ]; then
    export XDG_RUNTIME_DIR="${TMPDIR:-/tmp}/metric-loss-xdg-$(id -u)"
    mkdir -p "$XDG_RUNTIME_DIR" && chmod 700 "$XDG_RUNTIME_DIR"
fi
cases=(
    "--loss contrastive --batch 2048 --dim 128"
    "--loss contrastive --mode pairs --batch 65536 --dim 128"
    "--loss triplet --mining hard --batch 1024 --dim 64"
    "--loss triplet --mining semihard --batch 1024 --dim 64"
    "--loss triplet --mining all --batch 512 --dim 64"
    "--loss triplet --mode triplets --batch 65536 --dim 128"
    "--loss ntxent --batch 2048 --dim 128"
    "--loss supcon --batch 2048 --dim 128"
    "--loss clip --batch 1024 --dim 128"
    "--loss contrastive --batch 1024 --dim 300"
)
log=$(mktemp)
trap 'rm -f "$log"' EXIT
for ((round = 1; round <= rounds; round++)); do
    for c in "${cases[@]}"; do
        if ((round % 2)); then order=(old new); else order=(new old); fi
        for which in "${order[@]}"; do
            bin=$old
            [ "$which" = new ] && bin=$new
            # shellcheck disable=SC2086
            echo "$which|$c|$("$bin" bench $c --repeat "$repeat" --json | tail -1)" >>"$log"
        done
    done
done
python3 - "$log" <<'PY'
import collections, json, statistics, sys
times = collections.defaultdict(lambda: collections.defaultdict(list))
for line in open(sys.argv[1]):
    which, case, out = line.rstrip("\n").split("|", 2)
    times[case][which].append(json.loads(out)["median_s"])
print("| case | old s | new s | new/old | per round |")
print("|---|---|---|---|---|")
for case, t in times.items():
    o, n = statistics.median(t["old"]), statistics.median(t["new"])
    rounds = ", ".join(f"{b / a:.2f}" for a, b in zip(t["old"], t["new"]))
    print(f"| `{case}` | {o:.3f} | {n:.3f} | {n / o:.2f} | {rounds} |")
PY

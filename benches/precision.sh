#!/usr/bin/env bash
# f16 rows against f32 rows: the same cases on the same rows (the f16 run's rounded), each
# pair run back to back, alternating which goes first each round. Per case: median time per
# call (forward + backward, upload and read back), metric-loss's peak workspace and the
# process's peak resident memory (/usr/bin/time -v), and the ratio f16/f32. Markdown table.
#
#   cargo build --release --bin metric-loss
#   bash benches/precision.sh [BIN=target/release/metric-loss] [ROUNDS=2]
set -euo pipefail
bin=${1:-target/release/metric-loss} rounds=${2:-2}
if [ -z "${XDG_RUNTIME_DIR:-}" ]; then
    export XDG_RUNTIME_DIR="${TMPDIR:-/tmp}/metric-loss-xdg-$(id -u)"
    mkdir -p "$XDG_RUNTIME_DIR" && chmod 700 "$XDG_RUNTIME_DIR"
fi
[ -x /usr/bin/time ] || { echo "precision.sh needs /usr/bin/time (apt-get install time)" >&2; exit 2; }
cases=(
    "--loss contrastive --batch 4096 --dim 128 --repeat 3"
    "--loss ntxent --batch 4096 --dim 128 --repeat 3"
    "--loss siglip --batch 4096 --dim 128 --repeat 3"
    "--loss arcface --classes 4096 --batch 4096 --dim 128 --repeat 3"
    "--loss contrastive --batch 65536 --dim 16 --repeat 1 --warmup 0"
    "--loss ntxent --batch 65536 --dim 16 --repeat 1 --warmup 0"
    "--loss contrastive --mode pairs --batch 65536 --dim 128 --repeat 3"
    "--loss triplet --mode triplets --batch 65536 --dim 128 --repeat 3"
)
log=$(mktemp)
trap 'rm -f "$log" "$log.time"' EXIT
for ((round = 1; round <= rounds; round++)); do
    for c in "${cases[@]}"; do
        if ((round % 2)); then order=(f32 f16); else order=(f16 f32); fi
        for p in "${order[@]}"; do
            # shellcheck disable=SC2086
            json=$(/usr/bin/time -v -o "$log.time" "$bin" bench $c --precision "$p" --json | tail -1)
            rss=$(awk -F': ' '/Maximum resident/ {print $2}' "$log.time")
            echo "$p|$c|$rss|$json" >>"$log"
        done
    done
done
python3 - "$log" <<'PY'
import json, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    p, case, rss, js = line.rstrip("\n").split("|", 3)
    j = json.loads(js)
    r = rows.setdefault(case, {}).setdefault(p, {"t": [], "ws": 0, "rss": 0})
    r["t"].append(j["median_s"])
    r["ws"] = max(r["ws"], j["peak_device_bytes"] or 0)
    r["rss"] = max(r["rss"], int(rss))
print("| case | f32 s | f16 s | f16/f32 time | workspace f32 → f16 (MB) | peak RSS f32 → f16 (MB) |")
print("|---|---|---|---|---|---|")
for case, r in rows.items():
    a, b = r["f32"], r["f16"]
    ta, tb = statistics.median(a["t"]), statistics.median(b["t"])
    print(f"| `{case}` | {ta:.3f} | {tb:.3f} | {tb / ta:.2f} | "
          f"{a['ws'] / 1e6:.1f} → {b['ws'] / 1e6:.1f} | {a['rss'] / 1e3:.0f} → {b['rss'] / 1e3:.0f} |")
PY

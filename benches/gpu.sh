#!/usr/bin/env bash
# Times metric-loss and PyTorch's equivalents side by side, in one run, on the same inputs
# (after the adapter's own FMA and bandwidth peaks, `metric-loss bench --peak`):
# forward + backward of the contrastive loss over every pair of a batch, of the mined
# triplet losses (batch-hard, semi-hard, and all triplets up to B = 4096), then of NT-Xent
# (against pytorch-metric-learning's NTXentLoss), CLIP (against a plain cross-entropy) and
# SigLIP (against open_clip's SigLipLoss), up to and past the B where PyTorch runs out of
# memory.
#
#   bash benches/gpu.sh                       # B in {4096, 16384, 65536, 262144}, D = 128;
#                                             # softmax B in {1024, 2048, 4096, 16384, 65536}
#   bash benches/gpu.sh --batches 512,1024 --softmax-batches 256,512
#                                             # small sizes (software Vulkan, PyTorch on CPU)
#   ENGINES=rows,tile bash benches/gpu.sh ... # these pair-engine configurations, one after
#                                             # another (default: every configuration on a
#                                             # GPU, the automatic one on a CPU adapter)
#
# On the GPU machine (see ../shared/device/README.md): source .gpu/env.sh; bash benches/gpu.sh
# Needs python3 with numpy and torch (pytorch-metric-learning and open_clip_torch optional:
# benches/venv.sh), and a metric-loss
# binary on PATH or in target/release.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${XDG_RUNTIME_DIR:-}" ]; then
    export XDG_RUNTIME_DIR="${TMPDIR:-/tmp}/metric-loss-xdg-$(id -u)"
    mkdir -p "$XDG_RUNTIME_DIR" && chmod 700 "$XDG_RUNTIME_DIR"
fi
exe=$(command -v metric-loss || true)
[ -z "$exe" ] && exe="$PWD/target/release/metric-loss"
[ -x "$exe" ] || { echo "gpu.sh: no metric-loss binary (cargo build --release)" >&2; exit 1; }
info=$("$exe" info)
echo "$info" | head -4
extra=()
engines="${ENGINES:-rows,rows-direct,tile}"
# The FP32-peak fraction is about the H200; on a CPU device it means nothing, and lavapipe's
# time goes to the configuration it picks.
if echo "$info" | grep -q "device type:  Cpu"; then
    extra=(--peak-tflops 0)
    engines="${ENGINES:-auto}"
fi
"$exe" bench --peak
for engine in ${engines//,/ }; do
    if [ "$engine" = auto ]; then
        unset METRIC_LOSS_ENGINE
    else
        export METRIC_LOSS_ENGINE="$engine"
    fi
    echo "== pair engine: $engine"
    python3 benches/gpu_compare.py --exe "$exe" "${extra[@]}" "$@"
    python3 benches/gpu_compare_triplet.py --exe "$exe" "${extra[@]}" "$@"
    python3 benches/gpu_compare_softmax.py --exe "$exe" "${extra[@]}" "$@"
done

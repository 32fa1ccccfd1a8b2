#!/usr/bin/env bash
# The measurements against their peers, in one run on this machine: retrieval metrics, k-NN
# and anomaly AUC against pytorch-metric-learning, faiss-cpu and scikit-learn
# (compare_retrieval.py), then exact k-NN at scale beside faiss's IndexFlatL2 and torch's
# cdist + topk, with metric-loss's peak resident memory (knn_compare.py).
#   bash benches/measure.sh                    # N = M = 65536, D = 128, k = 10
#   bash benches/measure.sh --queries 8192 --references 8192
# Arguments go to knn_compare.py. Builds the release binary and the Python environment
# (benches/venv.sh) first.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${XDG_RUNTIME_DIR:-}" ]; then
    export XDG_RUNTIME_DIR="${TMPDIR:-/tmp}/metric-loss-xdg-$(id -u)"
    mkdir -p "$XDG_RUNTIME_DIR" && chmod 700 "$XDG_RUNTIME_DIR"
fi
cargo build --release --quiet --bin metric-loss
py="$(bash benches/venv.sh)/python"
"$py" benches/compare_retrieval.py target/release/metric-loss
"$py" benches/knn_compare.py --exe target/release/metric-loss "$@"

#!/usr/bin/env bash
# Creates (once) the Python environment the comparison scripts run in: PyTorch,
# pytorch-metric-learning, faiss-cpu, scikit-learn and open_clip (its loss module alone:
# without its torchvision and timm dependencies) at the versions the figures in
# benches/RESULTS.md were taken with (about 5.5 GB; the CPU builds are used).
#   bash benches/venv.sh [DIR]      # default /tmp/tv; prints DIR/bin for PATH
set -euo pipefail
dir="${1:-/tmp/tv}"
if ! "$dir/bin/python" -c "import torch, pytorch_metric_learning, faiss, sklearn" 2> /dev/null; then
    python3 -m venv "$dir"
    "$dir/bin/pip" install -q torch==2.15.0 pytorch-metric-learning==2.9.0 faiss-cpu==1.15.1 \
        scikit-learn==1.9.1
fi
if [ ! -f "$("$dir/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/open_clip/loss.py" ]; then
    "$dir/bin/pip" install -q --no-deps open_clip_torch==3.3.0
fi
echo "$dir/bin"

#!/usr/bin/env bash
# Quick start on a fresh Debian machine with Rust (no GPU needed):
#   bash run.sh train   # the main job: train an embedding model on the UCI digits with the
#                       # GPU loss (examples/train; e.g. --loss triplet --seed 2)
#   bash run.sh test    # the test suite (metric-loss, then metric-loss-burn)
#   bash run.sh check   # GPU-versus-CPU cross-check of every loss, mode and option
#   bash run.sh mpi     # a batch over 2 and 3 MPI processes, each its own device, checked
#                       # against one device (installs Open MPI and libclang when missing)
# All install Mesa's software Vulkan driver (lavapipe) first when no Vulkan driver exists.
# Extra arguments go to the demo or to `metric-loss check` (e.g. --batch 128 --dim 64).
set -euo pipefail
cd "$(dirname "$0")"

# Mesa prints "XDG_RUNTIME_DIR is invalid or not set" without it; harmless, but confusing.
if [ -z "${XDG_RUNTIME_DIR:-}" ]; then
    export XDG_RUNTIME_DIR="${TMPDIR:-/tmp}/metric-loss-xdg-$(id -u)"
    mkdir -p "$XDG_RUNTIME_DIR" && chmod 700 "$XDG_RUNTIME_DIR"
fi

have_vulkan() {
    local icd=0 loader=0
    for d in /usr/share/vulkan/icd.d /etc/vulkan/icd.d; do
        if compgen -G "$d/*.json" > /dev/null; then icd=1; fi
    done
    if ldconfig -p 2>/dev/null | grep -q 'libvulkan\.so\.1'; then loader=1; fi
    [ "$icd" = 1 ] && [ "$loader" = 1 ]
}

ensure_vulkan() {
    if have_vulkan; then
        return
    fi
    echo "run.sh: no Vulkan driver found; installing Mesa's (apt-get install mesa-vulkan-drivers)" >&2
    local sudo=""
    if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq mesa-vulkan-drivers libvulkan1 > /dev/null
    have_vulkan || { echo "run.sh: Vulkan driver still missing after install" >&2; exit 1; }
}

have_mpi() {
    command -v mpirun > /dev/null && command -v mpicc > /dev/null \
        && compgen -G "/usr/lib/llvm-*/lib/libclang*.so*" > /dev/null
}

ensure_mpi() {
    if have_mpi; then
        return
    fi
    echo "run.sh: installing Open MPI and libclang (apt-get install libopenmpi-dev openmpi-bin libclang-dev)" >&2
    local sudo=""
    if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq libopenmpi-dev openmpi-bin libclang-dev > /dev/null
    have_mpi || { echo "run.sh: Open MPI or libclang still missing after install" >&2; exit 1; }
}

case "${1:-train}" in
    train)
        ensure_vulkan
        shift || true
        cargo run --release --quiet --example train -- "$@"
        ;;
    check)
        ensure_vulkan
        shift || true
        cargo run --release --quiet --bin metric-loss -- check "$@"
        ;;
    test)
        ensure_vulkan
        cargo test
        # The burn member crate (builds burn: minutes the first time).
        burn_start=$(date +%s)
        cargo test -p metric-loss-burn
        echo "run.sh: metric-loss-burn built and tested in $(( $(date +%s) - burn_start )) s"
        ;;
    mpi)
        ensure_vulkan
        ensure_mpi
        cargo build --release --quiet --features mpi,testing --example mpi_ranks
        for np in 2 3; do
            echo "run.sh: mpirun -np $np"
            mpirun --allow-run-as-root --oversubscribe -np "$np" \
                "${CARGO_TARGET_DIR:-target}/release/examples/mpi_ranks"
        done
        ;;
    *)
        echo "usage: bash run.sh train [demo options] | bash run.sh test | bash run.sh check [options] | bash run.sh mpi" >&2
        exit 2
        ;;
esac

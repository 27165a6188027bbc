#!/usr/bin/env bash
# The GPU check of issue 17, one command: both supernet benchmarks with and without bf16 / channels-last,
# the op counts, then 2 supernet epochs (plus a scoring round and a controller round) of each `paper`
# search preset with their measured throughput and the extrapolated wall time of the full presets, one
# JSON line per figure on stdout. With two GPUs or more, a data-parallel step (issue 28): the ImageNet network
# trained by one process and by two (NCCL, SyncBN), how far apart they end and how fast each is; skipped,
# saying so, with one GPU. Any failing command (a CUDA error is an exception) stops it with a non-zero
# status. Budget: 8 minutes on one GPU, 2 more for the data-parallel step.
#
#   bash benchmarks/gpu_check.sh                      # on the GPU(s)
#   bash benchmarks/gpu_check.sh --device cpu --quick # the dry path (CI): tiny sizes, CUDA-only flags off,
#                                                     # the data-parallel step in two CPU processes (gloo)
set -euo pipefail
device=cuda
quick=""
while [ $# -gt 0 ]; do
    case "$1" in
        --device) device="$2"; shift 2 ;;
        --quick) quick="--quick"; shift ;;
        *) echo "usage: bash benchmarks/gpu_check.sh [--device cuda|cpu] [--quick]" >&2; exit 2 ;;
    esac
done
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
step() { echo "+ $*" >&2; "$@"; }

if [ "$device" = cuda ]; then
    python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device visible')"
fi
step python -m benchmarks.dispatch --archs "$([ -n "$quick" ] && echo 1 || echo 5)" ${quick:+--quick}
if [ "$device" = cuda ]; then
    for flags in "" "--amp" "--amp --channels-last"; do
        step python -m benchmarks.cnn_supernet --device cuda --config paper $quick $flags
    done
    for flags in "" "--amp" "--amp --cuda-graph"; do
        step python -m benchmarks.rnn_supernet --device cuda $quick $flags
    done
    step python -m benchmarks.search_cost --device cuda --epochs 2 --amp --channels-last --tf32 $quick
    gpus=$(python -c "import torch; print(torch.cuda.device_count())")
    if [ "$gpus" -ge 2 ]; then
        step python -m benchmarks.data_parallel --device cuda --nproc 2 --channels-last $quick
    else
        echo "gpu_check: $gpus GPU: the 2-GPU data-parallel step is skipped (it needs two)" >&2
    fi
else
    # paper-size benchmarks take minutes per figure on a CPU: the dry path runs the search measurement only
    echo "gpu_check: $device: supernet benchmarks skipped (CUDA only here)" >&2
    step python -m benchmarks.search_cost --device "$device" --epochs 1 $quick
    step python -m benchmarks.data_parallel --device "$device" --nproc 2 $quick
fi

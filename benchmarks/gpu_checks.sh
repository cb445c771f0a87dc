#!/usr/bin/env bash
# Issue 6's GPU measurements (about 10 minutes on an H100; each step stops at its own limit):
#   bash benchmarks/gpu_checks.sh OUT_DIR DATA_DIR
# OUT_DIR gets log.txt and the reports; DATA_DIR holds NMNIST/Train (tonic's layout).
# Each step has its own time limit, so one that hangs leaves the others' results.
set -u
out=${1:?usage: gpu_checks.sh OUT_DIR DATA_DIR}
data=${2:?usage: gpu_checks.sh OUT_DIR DATA_DIR}
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
log="$out/log.txt"
step() {  # step SECONDS CMD...: run, log, keep going on failure
    local limit=$1; shift
    echo "== $(date -u +%T) $*" | tee -a "$log"
    timeout "$limit" "$@" 2>&1 | tail -n 40 | tee -a "$log"
    echo "== rc ${PIPESTATUS[0]}" | tee -a "$log"
}
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv | tee -a "$log"
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__, torch.cuda.get_device_name())" | tee -a "$log"

# Compiled (Triton) vs eager scan: same spikes for the same CUDA generator state.
step 240 python3 -m pytest -q --tb=short -p no:cacheprovider tests/test_neurons.py -k cuda
# Training throughput, spikeff vs BPTT, same architecture, T and B (issue target: 3x).
step 120 python3 benchmarks/throughput.py --device cuda --out "$out/throughput_cuda.md"
# LIF scan kernels: bandwidth against a device copy and the nominal peak.
step 150 python3 benchmarks/lif_scan.py --device cuda --preset gpu --repeats 20 --out "$out/lif_scan_cuda.md"
# Peak CUDA memory against depth (issue target: depth 3 <= 1.2x depth 1).
# --op-transients names the ops whose internal memory (e.g. cuDNN workspace) lifts the CUDA peak.
step 180 python3 benchmarks/memory_depth.py --device cuda --batch 64 --repeats 1 --op-transients 5 \
    --out "$out/memory_depth_cuda.md"
# Does capping cuDNN's workspace bound it? (The cap is read by PyTorch's cuDNN v7 path only.)
step 90 env TORCH_CUDNN_V8_API_DISABLED=1 CUDNN_CONV_WSCAP_DBG=64 python3 benchmarks/memory_depth.py --device cuda \
    --batch 64 --repeats 1 --depths 1,3
# Accuracy on CUDA: the bench at its defaults (eager, fp32), then spikeff with bf16 synapses.
common=(--dataset nmnist --data-dir "$data" --cache-dir /tmp/spikeff-cache --device cuda --seeds 3
        --trials-curve 1,8 --noise-levels 0.2)
step 180 python3 -m spikeff.bench "${common[@]}" --methods spikeff bptt random --out /tmp/bench_cuda
step 120 python3 -m spikeff.bench "${common[@]}" --methods spikeff --precision bf16 --out /tmp/bench_cuda_bf16
for b in bench_cuda bench_cuda_bf16; do
    mkdir -p "$out/$b" && cp /tmp/$b/report.md /tmp/$b/report.json "$out/$b/" 2>/dev/null
done
echo "== $(date -u +%T) done" | tee -a "$log"

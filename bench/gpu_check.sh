#!/usr/bin/env bash
# minibert on a CUDA GPU in one run (about 5 minutes on an H200-class GPU):
#   1. the gpu_rules tests against real CuPy (tests/test_gpu_rules.py, MINIBERT_GPU_TESTS=cupy)
#   2. bench/gpu_check.py: CuPy vs NumPy forward and gradients (TinyBERT-4, BERT-base; float64,
#      float32), training step and inference vs PyTorch CUDA eager, distill-task tokens/s GPU vs CPU
# The report is written to $OUT/gpu_check.md (or the folder given as $1), with the tests' log.
# Needs CuPy, PyTorch with CUDA and transformers; downloads nothing. Without a GPU it says so and
# exits 2. A CPU dry run of step 2: python bench/gpu_check.py --standin --out /tmp/x
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-${OUT:-.}}"
mkdir -p "$out"
if ! python -c "import cupy; assert cupy.cuda.runtime.getDeviceCount() > 0" 2>/dev/null; then
    echo "gpu_check: no usable CuPy + CUDA GPU here (python -c 'import cupy' failed or saw no device)." >&2
    echo "gpu_check: for the CPU dry run: python bench/gpu_check.py --standin --out /tmp/gpu-check" >&2
    exit 2
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | tee "$out/gpu.txt"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-$(nproc)}"
echo "== 1. gpu_rules tests on real CuPy"
MINIBERT_GPU_TESTS=cupy timeout 240 python -m pytest -m gpu_rules -q -x -p no:cacheprovider \
    -k "not gpu_check_runs" tests/test_gpu_rules.py 2>&1 | tee "$out/gpu_rules_tests.log" | tail -25
tests=${PIPESTATUS[0]}
echo "== 2. gpu_check.py"
timeout 420 python bench/gpu_check.py --out "$out" 2>&1 | tee "$out/gpu_check.log"
check=${PIPESTATUS[0]}
echo "gpu_rules tests: exit $tests; gpu_check.py: exit $check; report: $out/gpu_check.md"
[ "$tests" -eq 0 ] && [ "$check" -eq 0 ]

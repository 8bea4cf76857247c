#!/usr/bin/env bash
# minibert on a CUDA GPU in one run (about 5 minutes on an H200-class GPU):
#   1. the gpu_rules tests against real CuPy (tests/test_gpu_rules.py, MINIBERT_GPU_TESTS=cupy)
#   2. bench/gpu_check.py: CuPy vs NumPy forward and gradients (TinyBERT-4, BERT-base; float64,
#      float32), training step and inference vs PyTorch CUDA eager, distill-task tokens/s GPU vs CPU
#   3. optional: fine-tuning on 2 GPUs, 2 processes over NCCL (mpiexec from the mpi extra), twice
#      with MINIBERT_REDUCTION=ordered: both runs must end with bit-identical weights. Skipped,
#      with a message, with fewer than 2 GPUs or without mpiexec.
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
echo "== 3. two processes on two GPUs (NCCL)"
gpus=$(python -c "import cupy; print(cupy.cuda.runtime.getDeviceCount())")
mpiexec="$(dirname "$(python -c 'import sys; print(sys.executable)')")/mpiexec"
nccl=0
if [ "$gpus" -lt 2 ] || [ ! -x "$mpiexec" ]; then
    echo "skipped: $gpus GPU(s) here and mpiexec $([ -x "$mpiexec" ] && echo found || echo missing);" \
         "the NCCL run needs 2 GPUs and pip install -e '.[mpi]'" | tee "$out/nccl.log"
else
    for run in a b; do
        MINIBERT_REDUCTION=ordered timeout 300 "$mpiexec" -n 2 python -m minibert.train finetune --device cupy \
            --model tiny --max-train-examples 1024 --max-eval-examples 64 --batch-size 32 --max-steps 20 \
            --log-steps 5 --save-steps 10 --progress false --overwrite-output-dir --output-dir "$out/nccl-$run" \
            2>&1 | tee -a "$out/nccl.log" | tail -3
    done
    python - "$out" <<'EOF' 2>&1 | tee -a "$out/nccl.log"
import json, sys
from pathlib import Path
import numpy as np
from safetensors.numpy import load_file
a, b = (load_file(f"{sys.argv[1]}/nccl-{r}/model.safetensors") for r in "ab")
log = [json.loads(line) for line in Path(sys.argv[1], "nccl-a", "metrics.jsonl").read_text().splitlines()]
same = all(np.array_equal(a[k], b[k]) for k in a)
print(f"NCCL, 2 GPUs: world_size {log[-1]['world_size']}, {log[-2].get('tokens_per_s')} tokens/s, "
      f"repeated runs bit-identical: {same}")
sys.exit(0 if same and log[-1]["world_size"] == 2 else 1)
EOF
    nccl=${PIPESTATUS[0]}
fi
echo "gpu_rules tests: exit $tests; gpu_check.py: exit $check; NCCL: exit $nccl; report: $out/gpu_check.md"
[ "$tests" -eq 0 ] && [ "$check" -eq 0 ] && [ "$nccl" -eq 0 ]

#!/usr/bin/env bash
# GPU readiness (issue 16 item 6): one prepared script for a CUDA machine, under 8 minutes.
#
#   bash benchmarks/gpu.sh            # from the repository root, torch with CUDA + transformers installed
#
# For the Pythia-160M and -1B shapes (seeded random weights, built once under benchmarks/_work/hub):
# our GD-readout and induction quantities on the GPU in fp32 (TF32 off) and bf16 against CPU fp32
# (tolerances in benchmarks/gpu_check.py: 1e-4 in fp32, 5e-2 in bf16), and the load, probe pass
# and floor (backbone-only forward over the same batches) times on the GPU. Results: $OUT (the
# device tool's output folder) or benchmarks/_work: gpu-check.json and gpu-check.md (the table
# for RESULTS.md). Exit status 1 if a comparison is outside its tolerance.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1
out=${OUT:-benchmarks/_work}
mkdir -p "$out" benchmarks/_work
python3 -c "import torch, transformers; assert torch.cuda.is_available(), 'torch sees no CUDA device'; \
print('torch', torch.__version__, 'transformers', transformers.__version__, torch.cuda.get_device_name(0))"
timeout 460 python3 benchmarks/gpu_check.py --device cuda --shapes 160m 1b --repeats 3 \
  --out "$out/gpu-check.json" | tee "$out/gpu-check.md"

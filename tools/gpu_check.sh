#!/usr/bin/env bash
# The GPU numbers in one run of under 6 minutes on one H200 (tools/benchmarks/gpu.py says what each row is):
# fusionaudio shapes (HTSAT-base + RoBERTa-base, 10 s, 77 and 256 tokens) at batch 416 and 768 with sdpa,
# eager and compiled towers; Whisper-base fcaps batches with and without duration buckets; host-device
# sync checks; one trainer=deepspeed2 step where deepspeed is installed. samples/s per GPU, TFLOP/s, MFU
# and peak memory for each, then a Markdown table to paste into the README.
#
#   tools/gpu_check.sh [report-file]     # default: gpu_report.md
#
# Needs python3 with torch and transformers (lightning, omegaconf and hydra-core for the training-module
# check and the deepspeed step); clsp comes from this checkout. Without CUDA it says so in one line and
# exits 0. CLSP_PEAK_TFLOPS sets the peak for a GPU the table in clsp/flops.py does not list.
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if ! "$PYTHON" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
  echo "gpu_check: no CUDA device (or no torch) here; nothing to measure"
  exit 0
fi
REPORT="${1:-gpu_report.md}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1
{
  echo "# clsp gpu_check $(date -u +%Y-%m-%dT%H:%M:%SZ), $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true
  "$PYTHON" -c 'import torch, transformers; print("torch", torch.__version__, "cuda", torch.version.cuda, "transformers", transformers.__version__)'
  # The script keeps to its own 320 s budget; the timeout is a last resort.
  timeout 345 "$PYTHON" tools/benchmarks/gpu.py || echo "gpu_check: tools/benchmarks/gpu.py exited with status $?"
} 2>&1 | tee "$REPORT"
echo "gpu_check: report written to $REPORT"

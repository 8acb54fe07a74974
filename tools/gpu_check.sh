#!/usr/bin/env bash
# The GPU side of every benchmark, in one report: frontends, Whisper variable length and duration
# bucketing, token-level loss memory, a full-size FusionAudio bf16 step (samples/s, MFU, no host sync),
# and the Lightning step vs a bare loop.
#
#   tools/gpu_check.sh [report-file]     # default: gpu_report.txt
#
# Without CUDA it says so in one line and exits 0.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python}"
if ! "$PYTHON" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
  echo "gpu_check: no CUDA device found; nothing to measure (run this on a machine with a GPU)"
  exit 0
fi
REPORT="${1:-gpu_report.txt}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" TOKENIZERS_PARALLELISM=false
{
  echo "# clsp gpu_check $(date -u +%Y-%m-%dT%H:%M:%SZ), $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true
  "$PYTHON" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)'
  "$PYTHON" tools/bench.py gpu_frontend frontend whisper_varlen bucketing token_infonce gpu_step train_overhead
} 2>&1 | tee "$REPORT"
echo "gpu_check: report written to $REPORT"

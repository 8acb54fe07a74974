#!/usr/bin/env bash
# Install clsp and its dev tools into the given interpreter's environment.
# Without a GPU, put the CPU build of torch in first: a bare `torch` requirement
# otherwise resolves to a multi-GB CUDA build.
set -euo pipefail
python=${1:-python3}
$python -m pip install -q --upgrade pip
if ! $python -c "import torch" 2>/dev/null; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    $python -m pip install -q "torch==2.13.0"
  else
    # CPU build: PyPI's local mirror here serves it; elsewhere add the PyTorch CPU index.
    $python -m pip install -q "torch==2.13.0" ${CLSP_TORCH_INDEX:+--index-url "$CLSP_TORCH_INDEX"}
  fi
fi
$python -m pip install -q -e ".[dev,tensorboard,wandb,onnx,caption]"

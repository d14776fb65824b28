#!/usr/bin/env bash
# Create .venv and install vlm-r1 with its test and DeepSpeed extras. Idempotent: a second run only checks a stamp.
# Override the interpreter with PYTHON=python3.11, the venv folder with VENV=path.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
stamp="$VENV/.vlm_r1_installed"
want="$(cat setup.py run_scripts/setup.sh | sha256sum | cut -c1-16)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
echo "[setup] creating $VENV and installing vlm-r1 (first run: a few minutes)"
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
# torch + torchvision first, pinned to builds that match each other (torchvision is needed by the Qwen/InternVL
# processors). Skip with VLM_R1_KEEP_TORCH=1 when you bring your own CUDA build.
if [ "${VLM_R1_KEEP_TORCH:-0}" != "1" ]; then
  case "$(uname -m)" in
    aarch64|arm64) torch_pins="torch==2.9.1 torchvision==0.24.1" ;;
    *) torch_pins="torch==2.14.1 torchvision==0.29.1" ;;
  esac
  "$VENV/bin/python" -m pip install -q $torch_pins
fi
DS_BUILD_OPS=0 "$VENV/bin/python" -m pip install -q -e ".[dev,deepspeed]"
echo "$want" > "$stamp"
echo "[setup] done: $("$VENV/bin/python" -c 'import torch, transformers, trl; print("torch", torch.__version__, "transformers", transformers.__version__, "trl", trl.__version__)')"

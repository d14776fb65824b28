#!/usr/bin/env bash
# Create .venv and install vlm-r1 with its test and DeepSpeed extras. Idempotent: a second run only checks a stamp.
# Override the interpreter that creates the venv with PYTHON=python3.11, the venv folder with VENV=path (the other
# run_scripts read VENV too). A venv that does not work (half made, too old a Python, moved) is made again.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
stamp="$VENV/.vlm_r1_installed"
want="$(cat setup.py run_scripts/setup.sh | sha256sum | cut -c1-16)"
usable() {  # the venv's interpreter runs, is Python 3.10 or newer, and has pip
  "$VENV/bin/python" -c 'import sys, pip; sys.exit(sys.version_info < (3, 10))' >/dev/null 2>&1
}
installed() {  # vlm_r1 imports (a moved checkout or a removed Python breaks it) and torch and trl are there
  "$VENV/bin/python" -c 'import importlib.util as u, vlm_r1; assert all(u.find_spec(m) for m in ("torch", "trl"))' \
    >/dev/null 2>&1
}
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && installed; then
  exit 0  # installed by this setup.sh and setup.py, and it still imports (a moved checkout or a removed Python does not)
fi
echo "[setup] creating $VENV and installing vlm-r1 (first run: a few minutes)"
if ! usable; then  # none yet, or a half-made / too-old one: (re)create it
  if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))' >/dev/null 2>&1; then
    echo "[setup] $PYTHON is not a Python 3.10 or newer (vlm-r1 needs one): set PYTHON=python3.11, for example" >&2
    exit 1
  fi
  "$PYTHON" -m venv --clear "$VENV" || {
    echo "[setup] '$PYTHON -m venv' failed; on Debian/Ubuntu install python3-venv, or set PYTHON to another Python" >&2
    exit 1
  }
fi
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

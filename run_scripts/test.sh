#!/usr/bin/env bash
# Set up (if needed) and run the test suite. This is the README's test command; .ci/run calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
bash run_scripts/setup.sh
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
# Arguments go to pytest; without a path among them the whole tests/ folder runs (`test.sh tests/test_cli.py -x`
# runs one file, `test.sh -k reward` selects from all).
paths=()
for arg in "$@"; do [ -e "${arg%%::*}" ] && paths+=("$arg"); done
[ ${#paths[@]} -gt 0 ] || set -- "$@" tests
exec "${VENV:-.venv}/bin/python" -m pytest -q "$@"

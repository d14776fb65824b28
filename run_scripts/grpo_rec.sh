#!/usr/bin/env bash
# The default job, one command on a fresh clone: set up .venv, then `vlm-r1 pipeline` (synthetic REC data, warm
# start, evaluation before, GRPO with recipes/tiny/rec_grpo.yaml, evaluation after, a before/after table).
# Any argument goes to `vlm-r1 pipeline` (see `vlm-r1 pipeline --help`), e.g. --work_dir DIR or --grpo_max_steps 100.
# Runs on CPU with one thread per process by default (OMP_NUM_THREADS); see docs/default_job.md.
set -euo pipefail
cd "$(dirname "$0")/.."
bash run_scripts/setup.sh
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
exec "${VENV:-.venv}/bin/python" -m vlm_r1.cli pipeline "$@"

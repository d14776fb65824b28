#!/usr/bin/env bash
# SFT of a tiny model on synthetic REC, in one stage: make the data (10,000 train rows, seed 0) and a fresh tiny
# Qwen2-VL (seed 0) under $WORK (default outputs/sft_rec), then `vlm-r1 sft --config recipes/tiny/rec_sft.yaml`.
# (The shipped warm start took two stages: run_scripts/make_warm_start.sh.)
# Extra arguments go to `vlm-r1 sft` (e.g. --max_steps 500 --output_dir DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
bash run_scripts/setup.sh
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
WORK=${WORK:-outputs/sft_rec}
PY="${VENV:-.venv}/bin/python"
[ -f "$WORK/data/rec_train.jsonl" ] || $PY -m vlm_r1.cli make-data --out "$WORK/data" --tasks rec --splits train --n 10000 --seed 0
[ -f "$WORK/tiny/config.json" ] || $PY -m vlm_r1.cli make-tiny --out "$WORK/tiny" --model_type qwen2_vl --seed 0
exec $PY -m vlm_r1.cli sft --config recipes/tiny/rec_sft.yaml --model_name_or_path "$WORK/tiny" \
  --train_data "$WORK/data/rec_train.jsonl" --output_dir "$WORK/checkpoint" "$@"

#!/usr/bin/env bash
# Rebuild the warm start shipped under data/warm_start/tiny_qwen2_vl_rec/ (see its README.md): a tiny Qwen2-VL
# (seed 0) trained by SFT on 10,000 synthetic REC rows (seed 0) in two stages. About 45 minutes on 2 CPU cores.
#   stage 1: recipes/tiny/rec_sft.yaml as it is (batch 16, lr 1e-3, cosine over 3,000 steps), stopped at step 2,000
#   stage 2: from stage 1, batch 32, lr 5e-4 with 20 warm-up steps, cosine over 6,000 steps
# The shipped weights came from these commands with the tokenizer `vlm-r1 make-tiny` trained then (vocab 1019, kept
# in that folder). Today's make-tiny trains a different one (vocab 1048), so this script now makes a similar model,
# not the shipped one: numbers measured from it will differ from the docs', which all start from the shipped weights.
# It writes to outputs/warm_start/final (OUT=...), never over the shipped folder unless OUT names it; use it with
#   bash run_scripts/grpo_rec.sh --warm_start outputs/warm_start/final
set -euo pipefail
if [ $# -gt 0 ]; then
  echo "make_warm_start.sh takes no arguments (got: $*); set WORK=... or OUT=... in the environment" >&2
  exit 2
fi
cd "$(dirname "$0")/.."
bash run_scripts/setup.sh
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
WORK=${WORK:-outputs/warm_start}
OUT=${OUT:-$WORK/final}
PY="${VENV:-.venv}/bin/python"
[ -f "$WORK/data/rec_train.jsonl" ] || $PY -m vlm_r1.cli make-data --out "$WORK/data" --tasks rec --splits train --n 10000 --seed 0
[ -f "$WORK/tiny/config.json" ] || $PY -m vlm_r1.cli make-tiny --out "$WORK/tiny" --model_type qwen2_vl --seed 0
$PY -m vlm_r1.cli sft --config recipes/tiny/rec_sft.yaml --model_name_or_path "$WORK/tiny" \
  --train_data "$WORK/data/rec_train.jsonl" --output_dir "$WORK/stage1" --max_steps 3000 --stop_at_step 2000
$PY -m vlm_r1.cli sft --config recipes/tiny/rec_sft.yaml --model_name_or_path "$WORK/stage1" \
  --train_data "$WORK/data/rec_train.jsonl" --output_dir "$WORK/stage2" --per_device_train_batch_size 32 \
  --learning_rate 5e-4 --warmup_steps 20 --max_steps 6000 --logging_steps 50
mkdir -p "$OUT"
echo '{"image_size": 112}' > "$OUT/warm_start.json"  # vlm-r1 pipeline refuses other image sizes with this checkpoint
cp "$WORK"/stage2/{config.json,generation_config.json,model.safetensors,processor_config.json,tokenizer.json,tokenizer_config.json,chat_template.jinja,vlm_r1_prompt.json} "$OUT"/
echo "warm start written to $OUT"

#!/usr/bin/env bash
# GRQO (DINO-R1) on the offline tiny Grounding DINO and exhaustively labelled synthetic shapes.
# Builds the model folder and the data once (under outputs/; not when --model_name_or_path, or --train_data and
# --eval_data, name others), then trains with the recipe.
#   run_scripts/grqo_dino.sh [--key value ...]      overrides of recipes/tiny/grqo_dino.yaml, e.g.
#   run_scripts/grqo_dino.sh --use_grqo false --use_kl false --output_dir outputs/sft_dino_tiny
# A real checkpoint: --model_name_or_path IDEA-Research/grounding-dino-tiny (plus your own JSONL).
# An output_dir that holds an earlier run is refused: pass a new --output_dir, delete the folder, or continue
# a killed run from its latest checkpoint with --resume_from_checkpoint auto.
set -euo pipefail
cd "$(dirname "$0")/.."
bash run_scripts/setup.sh
PY="${VENV:-.venv}/bin/python"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

given() {  # whether the command line sets option $1 (--key, --key=value, or the dashed spelling)
  local key=$1; shift
  for arg in "$@"; do
    arg=${arg%%=*}
    [ "${arg//-/_}" = "__$key" ] && return 0
  done
  return 1
}
# the tiny model and the synthetic data, only where the command line does not name others
if ! given model_name_or_path "$@" && [ ! -f outputs/tiny_grounding_dino/config.json ]; then
  "$PY" -c "from vlm_r1.grqo.tiny import make_tiny_grounding_dino as m; print(m('outputs/tiny_grounding_dino'))"
fi
if ! { given train_data "$@" && given eval_data "$@"; }; then
  "$PY" - <<'PY'
from pathlib import Path
from vlm_r1.grqo.data import write_synthetic_detection
for split, n in (("train", 2000), ("test", 500), ("ood", 500)):
    if not Path(f"outputs/synthetic_grqo/grqo_detection_{split}.jsonl").exists():
        print(write_synthetic_detection("outputs/synthetic_grqo", split, n, seed=0))
PY
fi
exec "$PY" -m vlm_r1.cli grqo --config recipes/tiny/grqo_dino.yaml "$@"

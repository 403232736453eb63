#!/usr/bin/env bash
# Teacher-layer ablation: average of all hidden states, last layer, 9th layer (for both teachers).
#   train/ablate_teacher_layers.sh WORK_DIR
set -euo pipefail
WORK=${1:?work folder holding prep/manifest.jsonl}
SM=${SM:-facebook/hubert-base-ls960}; STT=${STT:-facebook/wav2vec2-base-960h}; LM=${LM:-bert-base-uncased}
for LAYER in avg last 9; do
  dmcodec extract "$WORK/prep/manifest.jsonl" -o "$WORK/features-layer-$LAYER.h5" --sm "$SM" --sm-layer "$LAYER" \
    --stt "$STT" --lm "$LM" --lm-layer "$LAYER"
  dmcodec train --config train/configs/ablate_teachers.json --data "$WORK/prep/manifest.jsonl" \
    --features "$WORK/features-layer-$LAYER.h5" -o "$WORK/exp-layer-$LAYER" --resume
done
